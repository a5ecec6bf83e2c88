// The end of the caller's turn, end to end (docs/turns.md): the C client
// plays a caller who pauses in mid-sentence; the recogniser is the scripted
// one (a line per utterance, so the words are known), the LLM the OpenAI
// fixture, which logs every chat request the server makes. What the model
// is asked, and what the call's record keeps, say whether the two parts
// became one turn, and whether a reply made in a pause was dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { startServer, run, tempDir, endedCall } from '../lib/harness.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

const ENV = { OPENAI_API_KEY: 'sk-fixture-key-0123456789' };
const VOICE = ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0', '--greeting', '',
  '--asr', 'scripted', '--tts', 'tone', '--llm', 'openai', '--llm-model', 'fixture-model'];

// flite's words with its own silence cut, so the pause between the parts is exactly `pauseS`.
function twoPartWav(dir, first, pauseS, second) {
  const part = (name, text) => {
    const raw = join(dir, `${name}.raw.wav`), cut = join(dir, `${name}.wav`);
    execFileSync('flite', ['-voice', 'slt', '-t', text, '-o', raw]);
    execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', cut,
      'silence', '1', '0.02', '0.5%', 'reverse', 'silence', '1', '0.02', '0.5%', 'reverse']);
    return cut;
  };
  const a = part('a', first), b = part('b', second), out = join(dir, 'call.wav');
  const padded = join(dir, 'a-pad.wav');
  execFileSync('sox', [a, padded, 'pad', '2.5', String(pauseS)]);
  execFileSync('sox', [padded, b, out, 'pad', '0', '5']);
  return out;
}

async function placeCall(srv, wav) {
  const res = await run(['call', srv.url, '--play', wav, '--timeout', '30'], { timeoutMs: 60000 });
  assert.equal(res.code, 0, `exit ${res.code}\n${res.stdout}\n${res.stderr}`);
  return /answer: call ([0-9a-f]+)/.exec(res.stdout)[1];
}

const lastUser = (req) => [...req.messages].reverse().find((m) => m.role === 'user')?.content;

async function chats(fx) {
  return (await fx.log()).filter((e) => e.request?.messages).map((e) => e.request);
}

test('a pause after an open phrase does not end the turn: one request, both parts', { timeout: 120000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, reply: 'A table for two at eight.' });
  const dir = tempDir('tingshuo-turns-');
  const srv = await startServer({
    args: [...VOICE, '--llm-base-url', fx.v1, '--asr-prompt', 'i would like to book a table for|two people tonight'],
    env: ENV,
  });
  try {
    const wav = twoPartWav(dir, 'I would like to book a table for', 0.8, 'two people tonight.');
    const call = await endedCall(srv, await placeCall(srv, wav));
    const asked = await chats(fx);
    assert.equal(asked.length, 1, `one chat request, not ${asked.length}`);
    assert.equal(lastUser(asked[0]), 'i would like to book a table for two people tonight');
    const turns = call.turns.filter((t) => t.transcript);
    assert.equal(turns.length, 1);
    assert.equal(turns[0].transcript, 'i would like to book a table for two people tonight');
    assert.equal(turns[0].reply, 'A table for two at eight.');
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('speculate = all: a reply made in a pause is dropped when the caller goes on, and counted', { timeout: 120000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, reply: 'It is nine in the evening in London.' });
  const dir = tempDir('tingshuo-turns-');
  const srv = await startServer({
    args: [...VOICE, '--llm-base-url', fx.v1, '--asr-prompt', 'what time is it|in london',
      '--speculate', 'all', '--endpoint-min-ms', '1000'],
    env: ENV,
  });
  try {
    // judged halfway through the 1000 ms: the words looked finished, the reply was asked for
    const wav = twoPartWav(dir, 'What time is it', 0.7, 'in London?');
    const call = await endedCall(srv, await placeCall(srv, wav));
    const asked = await chats(fx);
    assert.equal(asked.length, 2, `a request in the pause and one for the turn, not ${asked.length}`);
    assert.equal(lastUser(asked[0]), 'what time is it');
    assert.equal(lastUser(asked[1]), 'what time is it in london');
    assert.ok(!asked[1].messages.some((m) => m.role === 'assistant'), 'the dropped reply is in no history');
    const turns = call.turns.filter((t) => t.transcript);
    assert.equal(turns.length, 1);
    assert.equal(turns[0].transcript, 'what time is it in london');
    const metrics = await (await fetch(new URL('/metrics', srv.url))).text();
    assert.match(metrics, /^tingshuo_speculative_replies_total\{outcome="dropped"\} 1$/m);
    assert.match(metrics, /^tingshuo_speculative_replies_total\{outcome="used"\} 1$/m);
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
