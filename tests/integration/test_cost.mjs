// A call's usage and estimated cost, end to end: the C client calls a voice
// agent whose ASR, LLM and TTS are the service fixture, which reports a
// scripted token usage for every chat request and logs it. The call's record
// must hold exactly the tokens the fixture reported, its turns what each
// reply used, and a cost worked out from those figures at the prices the
// server was given; the list and /metrics must say the same. Without
// prices, the cost is null, not 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startServer, run, tempDir, speechWav, endedCall } from '../lib/harness.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

const GREETING = 'Hello, this is the test line.';
const VOICE = ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0', '--greeting', GREETING];
const ENV = { OPENAI_API_KEY: 'sk-fixture-key-0123456789' };
const PRICES = { llm_input: 2.5, llm_cached: 1.25, llm_output: 10, tts: 15, asr: 0.006 };
const USAGE = { prompt: 1500, cached: 1024, output: 12 }; // what the fixture reports per request

function serviceArgs(fx) {
  return ['--asr', 'openai', '--asr-base-url', fx.v1, '--llm', 'openai', '--llm-base-url', fx.v1,
    '--llm-model', 'fixture-model', '--tts', 'openai', '--tts-base-url', fx.v1];
}

const priceArgs = (currency) => ['--price-llm-input', PRICES.llm_input, '--price-llm-cached', PRICES.llm_cached,
  '--price-llm-output', PRICES.llm_output, '--price-tts', PRICES.tts, '--price-asr', PRICES.asr,
  '--price-currency', currency].map(String);

async function getJson(srv, path) {
  const r = await fetch(new URL(path, srv.url));
  assert.equal(r.status, 200, path);
  return r.json();
}

async function makeCall(srv, dir) {
  const wav = speechWav(dir, 'q', 'What is the weather like today?', { before: 3.0, after: 4.0 });
  const res = await run(['call', srv.url, '--play', wav, '--timeout', '40'], { timeoutMs: 60000 });
  assert.equal(res.code, 0, `exit ${res.code}\n${res.stdout}\n${res.stderr}`);
  return /answer: call ([0-9a-f]+)/.exec(res.stdout)[1];
}

const costOf = (u) => ((u.llm_input_tokens - u.llm_cached_tokens) * PRICES.llm_input +
  u.llm_cached_tokens * PRICES.llm_cached + u.llm_output_tokens * PRICES.llm_output +
  u.tts_chars * PRICES.tts) / 1e6 + u.asr_seconds / 60 * PRICES.asr;

const KEYS = ['llm_input_tokens', 'llm_cached_tokens', 'llm_cache_write_tokens', 'llm_output_tokens',
  'tts_chars', 'tts_chars_cached', 'asr_seconds'];

function sumOfTurns(call) {
  const s = Object.fromEntries(KEYS.map((k) => [k, 0]));
  for (const t of call.turns) if (t.usage) for (const k of KEYS) s[k] += t.usage[k];
  return s;
}

test("a call's record holds the usage the services reported and its cost at the set prices", { timeout: 120000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: 'what is the weather like', reply: 'It is sunny today.', usage: USAGE });
  const dir = tempDir('tingshuo-cost-');
  const srv = await startServer({ args: [...VOICE, ...serviceArgs(fx), ...priceArgs('EUR')], env: ENV });
  try {
    const id = await makeCall(srv, dir);
    const call = await endedCall(srv, id);
    const chats = (await fx.log()).filter((e) => e.usage);
    assert.ok(chats.length >= 1, 'the fixture reported usage for a chat request');

    // The tokens are exactly those the fixture reported, over every request of the call.
    const u = call.usage;
    assert.ok(u, `the record has usage: ${JSON.stringify(call)}`);
    console.log(`call ${id}: usage ${JSON.stringify(u)}, cost ${call.cost} ${call.currency}`);
    console.log(`turns: ${JSON.stringify(call.turns.map((t) => ({ tts_cached: t.tts_cached, usage: t.usage })))}`);
    assert.equal(u.llm_input_tokens, chats.reduce((a, e) => a + e.usage.prompt, 0));
    assert.equal(u.llm_cached_tokens, chats.reduce((a, e) => a + e.usage.cached, 0));
    assert.equal(u.llm_output_tokens, chats.reduce((a, e) => a + e.usage.output, 0));
    assert.equal(u.llm_cache_write_tokens, 0, 'OpenAI reports no cache writes');
    assert.ok(u.asr_seconds > 0.5, `asr_seconds ${u.asr_seconds}`);
    assert.ok(u.tts_chars + u.tts_chars_cached >= GREETING.length + 'It is sunny today.'.length - 2,
      `characters spoken: ${JSON.stringify(u)}`);

    // The turns: the greeting's row has TTS alone, the caller's turn the LLM's tokens; what
    // the rows hold never exceeds the call's totals, and the tokens add up exactly.
    const greeting = call.turns[0];
    assert.equal(greeting.reply, GREETING);
    assert.equal(typeof greeting.tts_cached, 'boolean');
    assert.equal(greeting.usage.llm_input_tokens, 0);
    assert.equal(greeting.usage.tts_chars + greeting.usage.tts_chars_cached, GREETING.length);
    const asked = call.turns.find((t) => t.transcript);
    assert.ok(asked && asked.usage, JSON.stringify(call.turns));
    assert.equal(asked.usage.llm_input_tokens % USAGE.prompt, 0);
    assert.ok(asked.usage.llm_input_tokens >= USAGE.prompt);
    assert.equal(typeof asked.tts_cached, 'boolean');
    const rows = sumOfTurns(call);
    for (const k of ['llm_input_tokens', 'llm_cached_tokens', 'llm_output_tokens'])
      assert.equal(rows[k], u[k], `${k}: the turns add up to the call`);
    for (const k of KEYS) assert.ok(rows[k] <= u[k] + 1e-9, `${k}: turns ${rows[k]} > call ${u[k]}`);

    // The cost, worked out here from the stored figures, at the prices given.
    assert.equal(call.currency, 'EUR');
    assert.ok(Math.abs(call.cost - costOf(u)) < 1e-9, `cost ${call.cost}, expected ${costOf(u)}`);
    assert.ok(call.cost > 0);
    const list = await getJson(srv, '/api/calls');
    const summary = list.calls.find((c) => c.id === id);
    assert.equal(summary.cost, call.cost);
    assert.equal(summary.currency, 'EUR');

    const metrics = await (await fetch(new URL('/metrics', srv.url))).text();
    const m = /^tingshuo_estimated_cost_total\{currency="EUR"\} (\S+)$/m.exec(metrics);
    assert.ok(m, 'the cost counter is exported');
    assert.ok(Math.abs(Number(m[1]) - call.cost) < 1e-9, `counter ${m[1]}, call ${call.cost}`);
    const first = [...metrics.matchAll(/^tingshuo_reply_first_sentences_total\{source="(\w+)"\} (\S+)$/gm)];
    assert.ok(first.reduce((a, x) => a + Number(x[2]), 0) >= 2, 'the greeting and the answer were counted');
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without prices a call has usage and no cost', { timeout: 120000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: 'what is the weather like', reply: 'It is sunny today.', usage: USAGE });
  const dir = tempDir('tingshuo-cost-');
  const srv = await startServer({ args: [...VOICE, ...serviceArgs(fx)], env: ENV });
  try {
    const id = await makeCall(srv, dir);
    const call = await endedCall(srv, id);
    assert.equal(call.cost, null, 'not priced is unknown, not free');
    assert.equal(call.currency, null);
    assert.ok(call.usage.llm_input_tokens >= USAGE.prompt, JSON.stringify(call.usage));
    const summary = (await getJson(srv, '/api/calls')).calls.find((c) => c.id === id);
    assert.equal(summary.cost, null);
    const metrics = await (await fetch(new URL('/metrics', srv.url))).text();
    assert.match(metrics, /^# TYPE tingshuo_estimated_cost_total counter$/m);
    assert.doesNotMatch(metrics, /^tingshuo_estimated_cost_total\{/m);
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
