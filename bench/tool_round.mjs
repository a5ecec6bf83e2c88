#!/usr/bin/env node
// What the server adds to a tool round, measured on the wire by the two
// fixture servers on one monotonic clock (CLOCK_MONOTONIC, process.hrtime):
//   call -> webhook: the LLM fixture wrote the last byte of the reply that
//                    made the tool call -> the webhook fixture had the
//                    whole request;
//   result -> LLM:   the webhook fixture wrote its answer -> the LLM
//                    fixture had the next request (the result in it).
// Both include the loopback trip and the fixtures' own event loops, so the
// server's part is at most these figures.
//
// usage: node bench/tool_round.mjs [--bin PATH] [--calls N] [--llm openai|anthropic|both]
//                                  [--json FILE]
//
// Each call asks one question; the LLM fixture answers with one call of
// a webhook tool, then speaks the result. Calls go one after another.
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { writeFileSync, rmSync } from 'node:fs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const opts = { bin: join(root, 'build', 'tingshuo'), calls: 20, llm: 'both', json: null };
for (let i = 2; i < process.argv.length; i += 2) {
  const [k, v] = [process.argv[i], process.argv[i + 1]];
  if (k === '--bin') opts.bin = resolve(v);
  else if (k === '--calls') opts.calls = Number(v);
  else if (k === '--llm') opts.llm = v;
  else if (k === '--json') opts.json = v;
  else { console.error(`tool_round.mjs: unknown option ${k}`); process.exit(2); }
}
process.env.TS_BIN = opts.bin;
process.env.TS_SOURCE_DIR = root;
const { startServer, tempDir, speechWav } = await import('../tests/lib/harness.mjs');
const { placeCall } = await import('../tests/lib/call.mjs');
const { startFixture } = await import('../tests/fixtures/services/fixture.mjs');
const { startToolFixture } = await import('../tests/fixtures/tools/start.mjs');

const ms = (a, b) => Number(BigInt(b) - BigInt(a)) / 1e6;
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN; };
const chats = (log) => log.filter((e) => e.service === 'openai-chat' || e.service === 'anthropic');

async function runBackend(backend, dir, wav) {
  const llm = await startFixture();
  const hook = await startToolFixture('webhook.mjs', 'whsec-bench-0123456789');
  const tools = join(dir, 'tools.json');
  writeFileSync(tools, JSON.stringify({ tools: [{ name: 'get_order_status', description: 'Look up an order.',
    parameters: { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] },
    webhook: { url: `${hook.base}/hook/ok` } }] }));
  const srv = await startServer({
    args: ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0', '--asr', 'scripted',
      '--asr-prompt', 'where is my order', '--llm', backend, '--llm-base-url', llm.v1, '--llm-model', 'fixture-model',
      '--tts', 'tone', '--tools-file', tools],
    env: { OPENAI_API_KEY: 'sk-bench-0123456789', ANTHROPIC_API_KEY: 'sk-ant-bench-0123456789',
      TINGSHUO_TOOLS_SECRET: 'whsec-bench-0123456789' },
  });
  const toWebhook = [], toLlm = [];
  try {
    for (let i = 0; i < opts.calls; i++) {
      // One event for the arguments, so the reply's last write is the call's completion.
      await llm.script({ reset: true, argsChunk: 1000, toolCalls: [{ name: 'get_order_status', arguments: { order_id: String(i) } }],
        toolReply: 'Your order {order_id} has {status}.' });
      await hook.post('/_fixture/reset');
      const ev = placeCall(srv.url, wav, { timeoutS: 30 });
      if (await ev.done !== 0) throw new Error(`call ${i} failed:\n${ev.dump()}`);
      const [first, second] = chats(await llm.log());
      const [hit] = await hook.get('/_fixture/log');
      if (!first || !second || !hit) throw new Error(`call ${i}: the round did not happen`);
      toWebhook.push(ms(first.writeNs.at(-1), hit.receivedNs));
      toLlm.push(ms(hit.answeredNs, second.bodyNs));
    }
  } finally {
    await srv.stop();
    await Promise.all([llm.stop(), hook.stop()]);
  }
  const sum = (a) => ({ p50: pct(a, 0.5), p95: pct(a, 0.95), max: Math.max(...a) });
  return { backend, calls: opts.calls, call_to_webhook_ms: sum(toWebhook), result_to_llm_ms: sum(toLlm),
    samples: { call_to_webhook_ms: toWebhook, result_to_llm_ms: toLlm } };
}

const dir = tempDir('tingshuo-bench-tools-');
try {
  const wav = speechWav(dir, 'q', 'Where is my order?', { before: 0.5, after: 3.0 });
  const backends = opts.llm === 'both' ? ['openai', 'anthropic'] : [opts.llm];
  const results = [];
  for (const b of backends) results.push(await runBackend(b, dir, wav));
  const f = (x) => x.toFixed(2).padStart(6);
  console.log(`tool round overhead, ${opts.calls} calls per backend (ms, on the fixtures' clock):`);
  console.log('backend     call -> webhook p50 / p95 / max     result -> LLM p50 / p95 / max');
  for (const r of results) {
    const a = r.call_to_webhook_ms, b = r.result_to_llm_ms;
    console.log(`${r.backend.padEnd(10)}  ${f(a.p50)} / ${f(a.p95)} / ${f(a.max)}          ${f(b.p50)} / ${f(b.p95)} / ${f(b.max)}`);
  }
  if (opts.json) writeFileSync(opts.json, JSON.stringify(results, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
