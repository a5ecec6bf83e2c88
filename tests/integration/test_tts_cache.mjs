// The TTS cache through a real server: the phrases said on every call (the
// greeting, the apology) are synthesised once, at start, and then play from
// the cache on every call; the disk cache survives a restart; a corrupt cache
// file is ignored and replaced. Calls are made by `tingshuo call`, and the
// TTS service is the OpenAI speech fixture, whose log says what it was asked
// to synthesise. The LLM fixture answers 401, so each turn's reply is the
// apology.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, tempDir, speechWav } from '../lib/harness.mjs';
import { placeCall } from '../lib/call.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

const GREETING = 'Thanks for calling the test line.';
const APOLOGY = ["Sorry, I can't answer right now.", 'Please try again in a moment.'];

const ctx = {};

function serve() {
  return startServer({
    dataDir: ctx.data,
    args: ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0',
      '--greeting', GREETING, '--asr', 'scripted', '--asr-prompt', 'what time is it',
      '--llm', 'openai', '--llm-base-url', ctx.fx.v1, '--llm-model', 'fixture:401',
      '--tts', 'openai', '--tts-base-url', ctx.fx.v1],
    env: { OPENAI_API_KEY: 'sk-fixture-key-0123456789' },
  });
}

// How often the TTS service was asked for `text`.
async function synthesised(text) {
  return (await ctx.fx.log()).filter((e) => e.service === 'openai-speech' && e.request?.input === text).length;
}

// Waits until the phrases warmed at start have been asked for `n` times each.
async function warmed(n, timeoutMs = 10000) {
  const t0 = Date.now();
  for (;;) {
    const counts = await Promise.all([GREETING, ...APOLOGY].map(synthesised));
    if (counts.every((c) => c >= n)) return counts;
    if (Date.now() - t0 > timeoutMs) assert.fail(`phrases not synthesised at start: ${counts}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// One call: the greeting, a question, its reply (the apology); resolves the call's events.
async function call() {
  const ev = placeCall(ctx.srv.url, ctx.wav, { timeoutS: 30 });
  const code = await ev.done;
  // The client exits 1 for the LLM's error event, which is what this server is made to do.
  assert.ok(code === 0 || (code === 1 && ev.errors.length && ev.errors.every((e) => /language model/.test(e.text))),
    `exit status ${code}:\n${ev.dump()}`);
  assert.equal(ev.replies.length, 2, ev.dump());
  return ev;
}

function cacheFiles() {
  const dir = join(ctx.data, 'tts-cache');
  return readdirSync(dir, { recursive: true }).map((f) => join(dir, String(f)))
    .filter((f) => statSync(f).isFile());
}

before(async () => {
  ctx.dir = tempDir('tingshuo-ttscache-');
  ctx.data = join(ctx.dir, 'data');
  // Time for the greeting, then the question, then time for the apology.
  ctx.wav = speechWav(ctx.dir, 'q', 'What time is it?', { before: 3.0, after: 5.0 });
  ctx.fx = await startFixture();
  await ctx.fx.script({ reset: true, toneMs: 400 });
  ctx.srv = await serve();
});

after(async () => {
  try {
    if (ctx.srv) await ctx.srv.stop();
  } finally {
    await ctx.fx?.stop();
    rmSync(ctx.dir, { recursive: true, force: true });
  }
});

test('the greeting and the apology are synthesised once and then play from the cache', async () => {
  assert.deepEqual(await warmed(1), [1, 1, 1], 'each phrase synthesised once, at start');
  for (let i = 0; i < 2; i++) {
    const ev = await call();
    const greeting = ev.latency.find((l) => l.turn === 0);
    assert.ok(greeting, `a latency event for the greeting:\n${ev.dump()}`);
    assert.equal(greeting.cached, true, `the greeting came from the cache:\n${ev.dump()}`);
    const reply = ev.latency.find((l) => l.turn === 1);
    assert.ok(reply && reply.cached, `the apology came from the cache:\n${ev.dump()}`);
    const first = ev.usage.find((u) => u.turn === 0);
    assert.ok(first, `a usage event for the greeting:\n${ev.dump()}`);
    assert.equal(first.tts_chars, 0);
    assert.equal(first.tts_chars_cached, [...GREETING].length);
  }
  assert.deepEqual(await Promise.all([GREETING, ...APOLOGY].map(synthesised)), [1, 1, 1],
    'no phrase was synthesised again');
});

test('the disk cache survives a restart; a corrupt file is ignored and replaced', async () => {
  await ctx.srv.stop();
  await ctx.fx.script({ reset: true, toneMs: 400 });
  ctx.srv = await serve();
  await new Promise((r) => setTimeout(r, 1500)); // what a warm-up would have asked for by now
  assert.deepEqual(await Promise.all([GREETING, ...APOLOGY].map(synthesised)), [0, 0, 0],
    'after a restart the phrases come from disk');
  let ev = await call();
  assert.equal(ev.latency.find((l) => l.turn === 0)?.cached, true, ev.dump());

  await ctx.srv.stop();
  const files = cacheFiles();
  assert.ok(files.length >= 3, `cache files: ${files}`);
  for (const f of files) { // flip bytes in the audio: the checksum must catch it
    const b = readFileSync(f);
    for (let i = Math.floor(b.length / 2); i < b.length; i += 7) b[i] ^= 0x5a;
    writeFileSync(f, b);
  }
  await ctx.fx.script({ reset: true, toneMs: 400 });
  ctx.srv = await serve();
  assert.deepEqual(await warmed(1), [1, 1, 1], 'corrupt entries are synthesised again');
  ev = await call();
  assert.equal(ev.latency.find((l) => l.turn === 0)?.cached, true, ev.dump());

  await ctx.srv.stop();
  await ctx.fx.script({ reset: true, toneMs: 400 });
  ctx.srv = await serve();
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(await Promise.all([GREETING, ...APOLOGY].map(synthesised)), [0, 0, 0],
    'the replaced files are good');
});
