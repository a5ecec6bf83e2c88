#!/usr/bin/env node
// What the TTS cache saves, with a slow TTS service: the OpenAI speech
// fixture answers each request after --first-byte-ms (default 300). The
// server greets every call and, its LLM fixture refusing every request
// (401), answers every question with the apology, so the two phrases every
// call hears are measured: their time to first audio (the latency event's
// tts_first_audio_ms, from the request for speech to its first audio) and
// how many requests the TTS service got, with the cache off and on.
//
// usage: node bench/tts_cache.mjs [--bin PATH] [--calls N] [--first-byte-ms MS]
//                                 [--json FILE]
//
// Each mode starts its own fixture and server (fresh data directory), waits
// for what the server synthesises at start, then places --calls calls one
// after another with `tingshuo call`.
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { writeFileSync, rmSync } from 'node:fs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const opts = { bin: join(root, 'build', 'tingshuo'), calls: 5, firstByteMs: 300, json: null };
for (let i = 2; i < process.argv.length; i += 2) {
  const [k, v] = [process.argv[i], process.argv[i + 1]];
  if (k === '--bin') opts.bin = resolve(v);
  else if (k === '--calls') opts.calls = Number(v);
  else if (k === '--first-byte-ms') opts.firstByteMs = Number(v);
  else if (k === '--json') opts.json = v;
  else { console.error(`tts_cache.mjs: unknown option ${k}`); process.exit(2); }
}
process.env.TS_BIN = opts.bin;
process.env.TS_SOURCE_DIR = root;
const { startServer, tempDir, speechWav } = await import('../tests/lib/harness.mjs');
const { placeCall } = await import('../tests/lib/call.mjs');
const { startFixture } = await import('../tests/fixtures/services/fixture.mjs');

const GREETING = 'Thanks for calling. How can I help you today?';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor((s.length - 1) / 2)] : NaN; };
const speechRequests = async (fx) => (await fx.log()).filter((e) => e.service === 'openai-speech').length;

async function runMode(cache, wav) {
  const fx = await startFixture();
  await fx.script({ reset: true, delayMs: opts.firstByteMs, toneMs: 400 });
  const mb = cache ? ['--tts-cache-mb', '64', '--tts-cache-disk-mb', '256'] : ['--tts-cache-mb', '0', '--tts-cache-disk-mb', '0'];
  const srv = await startServer({
    args: ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0', '--greeting', GREETING,
      '--asr', 'scripted', '--asr-prompt', 'what time is it',
      '--llm', 'openai', '--llm-base-url', fx.v1, '--llm-model', 'fixture:401',
      '--tts', 'openai', '--tts-base-url', fx.v1, '--tts-model', 'fixture:slow-first-byte', ...mb],
    env: { OPENAI_API_KEY: 'sk-bench-0123456789' },
  });
  // What the server synthesises at start: wait until the count settles.
  let last = -1, now = await speechRequests(fx);
  while (now !== last) { await sleep(opts.firstByteMs + 700); last = now; now = await speechRequests(fx); }
  const atStart = now;
  const greeting = [], apology = [];
  let cachedGreetings = 0, cachedApologies = 0;
  for (let i = 0; i < opts.calls; i++) {
    const ev = placeCall(srv.url, wav, { timeoutS: 30 });
    const code = await ev.done;
    if (code !== 0 && !(code === 1 && ev.replies.length === 2)) throw new Error(`call ${i} failed:\n${ev.dump()}`);
    const g = ev.latency.find((l) => l.turn === 0), a = ev.latency.find((l) => l.turn === 1);
    if (g?.tts_first_audio !== undefined) greeting.push(g.tts_first_audio);
    if (a?.tts_first_audio !== undefined) apology.push(a.tts_first_audio);
    cachedGreetings += g?.cached ? 1 : 0;
    cachedApologies += a?.cached ? 1 : 0;
  }
  const total = await speechRequests(fx);
  await srv.stop();
  await fx.stop();
  return { cache: cache ? 'on' : 'off', calls: opts.calls, greeting_first_audio_ms: greeting,
    apology_first_audio_ms: apology, greeting_p50_ms: median(greeting), apology_p50_ms: median(apology),
    greetings_cached: cachedGreetings, apologies_cached: cachedApologies,
    tts_requests_at_start: atStart, tts_requests_during_calls: total - atStart };
}

const dir = tempDir('tingshuo-bench-ttscache-');
try {
  const wav = speechWav(dir, 'q', 'What time is it?', { before: 4.0, after: 5.0 });
  const results = [];
  for (const cache of [false, true]) results.push(await runMode(cache, wav));
  console.log(`TTS service: ${opts.firstByteMs} ms to first byte; ${opts.calls} calls per mode, each a greeting and an apology`);
  console.log('cache  greeting first audio p50  apology first audio p50  from cache (greeting/apology)  TTS requests at start / during calls');
  for (const r of results) {
    console.log(`${r.cache.padEnd(5)}  ${String(r.greeting_p50_ms).padStart(20)} ms  ${String(r.apology_p50_ms).padStart(19)} ms` +
      `  ${`${r.greetings_cached}/${r.calls}, ${r.apologies_cached}/${r.calls}`.padStart(29)}` +
      `  ${String(r.tts_requests_at_start).padStart(21)} / ${r.tts_requests_during_calls}`);
  }
  if (opts.json) writeFileSync(opts.json, JSON.stringify({ first_byte_ms: opts.firstByteMs, results }, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
