// A caller in Chromium asks about an order; the LLM (the OpenAI chat
// fixture) calls the shop's webhook (a fixture receiver), and the caller
// hears the status the webhook returned, spoken by flite. The page shows
// the tool's card, and what the browser heard, recognised again by
// pocketsphinx, says the status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, launchBrowser, tempDir, speechWav, envelope, bestCorrelation, readWav, hangUp } from '../lib/harness.mjs';
import { VOICE_AGENT_ARGS, startRecordedCall, waitForEvent, stopDuplexRecorder, writeWav16k,
  transcribe, wordOverlap } from '../lib/voice.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';
import { startToolFixture } from '../fixtures/tools/start.mjs';

test('asking about an order: the webhook is called and its status is heard', { timeout: 180000 }, async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'question', 'Where is my order?', { before: 1.0, after: 14 });
  const llm = await startFixture();
  const hook = await startToolFixture('webhook.mjs', 'whsec-browser-test-secret');
  await llm.script({ reset: true, toolCalls: [{ name: 'get_order_status', arguments: { order_id: '42' } }],
    toolText: 'Let me check that.', toolReply: 'Your order {order_id} has {status}.' });
  const tools = join(dir, 'tools.json');
  writeFileSync(tools, JSON.stringify({ tools: [{
    name: 'get_order_status', description: 'Look up an order by its number.',
    parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] },
    webhook: { url: `${hook.base}/hook/ok`, timeout_ms: 3000 },
  }] }));
  const srv = await startServer({
    args: [...VOICE_AGENT_ARGS, '--asr', 'scripted', '--asr-prompt', 'where is my order forty two',
      '--llm', 'openai', '--llm-base-url', llm.v1, '--llm-model', 'fixture-model', '--tts', 'flite',
      '--tools-file', tools],
    env: { OPENAI_API_KEY: 'sk-fixture-key-0123456789', TINGSHUO_TOOLS_SECRET: 'whsec-browser-test-secret' },
  });
  const browser = await launchBrowser({ wav });
  try {
    const { page, assertNoErrors } = await startRecordedCall(browser, srv.url);
    const result = await waitForEvent(page, (e) => e.type === 'tool_result', 30000);
    assert.equal(result.is_error, false, JSON.stringify(result));
    const reply = await waitForEvent(page, (e) => e.type === 'reply', 30000);
    assert.equal(reply.text, 'Let me check that. Your order 42 has shipped.');
    await page.waitForTimeout(1000);
    const rec = await stopDuplexRecorder(page);

    // The card: the call and what it answered.
    assert.match(await page.textContent('.msg.tool .call'), /^get_order_status\(\{"order_id":"42"\}\)$/);
    assert.match(await page.textContent('.msg.tool .result'), /"status":"shipped"/);
    const [hit] = await hook.get('/_fixture/log');
    assert.equal(hit.verified, true);

    // What the browser heard is the reply. Recognised again, most of its words come back; and
    // the sentence with the webhook's status is in it: the received audio's envelope matches
    // flite's own rendering of that sentence far better than of one with another status.
    const got = envelope(rec.remote, rec.rate);
    assert.ok(Math.max(...got) > -30, 'reply audio reached the browser');
    const heard = transcribe(writeWav16k(dir, 'reply', rec.remote, rec.rate));
    const overlap = wordOverlap(reply.text, heard);
    console.log(`pocketsphinx heard: "${heard}" (word overlap ${overlap.toFixed(2)})`);
    assert.ok(overlap >= 0.5, `the audio says the reply (overlap ${overlap.toFixed(2)})`);
    const match = (text, name) => {
      const w = readWav(speechWav(dir, name, text, { before: 0, after: 0 }));
      return bestCorrelation(got, envelope(w.samples, w.rate)).corr;
    };
    const status = match('Your order 42 has shipped.', 'status'), other = match('Your order 42 was cancelled.', 'other');
    console.log(`envelope correlation: the status sentence ${status.toFixed(2)}, another status ${other.toFixed(2)}`);
    assert.ok(status > 0.8 && status > other + 0.05, 'the status the webhook returned is heard');

    await hangUp(page);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
    await Promise.all([llm.stop(), hook.stop()]);
  }
});
