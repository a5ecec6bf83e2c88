// A call with every engine a service: the caller's speech goes to an
// OpenAI-compatible transcription service, the text to an OpenAI-compatible
// chat completions service, the reply to an OpenAI-compatible speech
// service, all three played by the fixture server. The page must get the
// fixture's transcript, then the fixture LLM's reply, and hear reply audio.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, tempDir, speechWav, envelope, hangUp } from '../lib/harness.mjs';
import { VOICE_AGENT_ARGS, startRecordedCall, waitForEvent, stopDuplexRecorder } from '../lib/voice.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

const TRANSCRIPT = 'what is the weather like today';
const REPLY = 'It is sunny and warm today. Enjoy the afternoon.';

test('ASR, LLM and TTS services answer a call', { timeout: 180000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: TRANSCRIPT, reply: REPLY, toneMs: 1500 });
  const dir = tempDir();
  const wav = speechWav(dir, 'question', 'What is the weather like today?', { before: 1.0, after: 14 });
  const srv = await startServer({
    args: [...VOICE_AGENT_ARGS,
      '--asr', 'openai', '--asr-base-url', fx.v1,
      '--llm', 'openai', '--llm-base-url', fx.v1, '--llm-model', 'fixture-model',
      '--tts', 'openai', '--tts-base-url', fx.v1],
    env: { OPENAI_API_KEY: 'sk-fixture-key-0123456789' },
  });
  const browser = await launchBrowser({ wav });
  try {
    const { page, assertNoErrors } = await startRecordedCall(browser, srv.url);

    const final = await waitForEvent(page, (e) => e.type === 'transcript' && e.final, 30000);
    assert.equal(final.text, TRANSCRIPT);
    const reply = await waitForEvent(page, (e) => e.type === 'reply', 30000);
    assert.equal(reply.text.trim(), REPLY);
    assert.equal(reply.interrupted, false);
    await page.waitForTimeout(500);
    const rec = await stopDuplexRecorder(page);
    const env = envelope(rec.remote, rec.rate);
    assert.ok(Math.max(...env) > -30, 'reply audio reached the browser');

    // What the services were sent.
    const log = await fx.log();
    const asr = log.find((e) => e.service === 'openai-transcriptions');
    assert.ok(asr?.wav?.samples > 16000 * 0.5, 'the utterance was uploaded as a WAV file');
    const chat = log.find((e) => e.service === 'openai-chat');
    assert.equal(chat.request.model, 'fixture-model');
    assert.ok(chat.request.messages.some((m) => m.role === 'user' && m.content === TRANSCRIPT));
    assert.ok(log.some((e) => e.service === 'openai-speech'), 'the reply was synthesised');
    assert.ok(!srv.stderr.includes('sk-fixture-key'), 'the key is never logged');

    await hangUp(page);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
    await fx.stop();
  }
});
