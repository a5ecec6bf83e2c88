// GET /metrics after a real call: the C client calls a voice agent whose
// ASR, LLM and TTS are the service fixture, so every part of the server has
// something to count. Debian's promtool must accept the text without a single
// problem (lint warnings included), and the counters must have moved: calls,
// turns, latency histograms, RTP, engines, HTTP client, store, process. A
// second call against an LLM that never answers must count as engine and
// HTTP timeouts, and a third, whose caller goes away while the LLM request
// waits, as cancelled. And the Grafana dashboard must only ask for metrics
// the server exports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { startServer, run, tempDir, speechWav, BIN, SOURCE_DIR } from '../lib/harness.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

const VOICE = ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0'];

function serviceArgs(fx, llmModel = 'fixture-model') {
  return ['--asr', 'openai', '--asr-base-url', fx.v1, '--llm', 'openai', '--llm-base-url', fx.v1,
    '--llm-model', llmModel, '--tts', 'openai', '--tts-base-url', fx.v1];
}
const ENV = { OPENAI_API_KEY: 'sk-fixture-key-0123456789' };

async function scrape(srv) {
  const r = await fetch(new URL('/metrics', srv.url));
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return r.text();
}

// The exposition as {families: Map name -> type, samples: [{name, labels, value}]}.
function parse(text) {
  const families = new Map(), samples = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) { families.set(t[1], t[2]); continue; }
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return { families, samples };
}

function matching(m, name, match) {
  return m.samples.filter((s) => s.name === name &&
    Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

// Sum of the samples named `name` whose labels include `match`; there must be one.
function sum(m, name, match = {}) {
  const hits = matching(m, name, match);
  assert.ok(hits.length > 0, `no sample ${name} ${JSON.stringify(match)}`);
  return hits.reduce((a, s) => a + s.value, 0);
}

// The same, 0 when there is none yet (a labelled series appears with its first event).
function total(m, name, match = {}) {
  return matching(m, name, match).reduce((a, s) => a + s.value, 0);
}

function promtool(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.error, undefined, `promtool: ${r.error}`);
  assert.equal(`${r.stdout}${r.stderr}`, '', 'promtool found problems');
  assert.equal(r.status, 0);
}

async function until(fn, ms = 10000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v || Date.now() - t0 > ms) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('a call moves the counters and promtool accepts the text', { timeout: 120000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: 'what is the weather like', reply: 'It is sunny today.', toneMs: 800 });
  const dir = tempDir('tingshuo-metrics-');
  const srv = await startServer({ args: [...VOICE, ...serviceArgs(fx)], env: ENV });
  try {
    const before = parse(await scrape(srv));
    assert.equal(sum(before, 'tingshuo_calls_started_total'), 0);
    const started = sum(before, 'process_start_time_seconds');
    assert.ok(Math.abs(started - Date.now() / 1000) < 60, `process_start_time_seconds ${started}`);

    const wav = speechWav(dir, 'q', 'What is the weather like today?', { before: 0.5, after: 3.0 });
    const res = await run(['call', srv.url, '--play', wav, '--timeout', '40'], { timeoutMs: 60000 });
    assert.equal(res.code, 0, `exit ${res.code}\n${res.stdout}\n${res.stderr}`);
    const callId = /answer: call ([0-9a-f]+)/.exec(res.stdout)[1];

    // The end reaches the control loop, and the store writes, a moment after the client is done.
    let text, m;
    await until(async () => {
      text = await scrape(srv);
      m = parse(text);
      return total(m, 'tingshuo_calls_ended_total') === 1 && total(m, 'tingshuo_store_queue_depth') === 0 &&
        total(m, 'tingshuo_store_events_written_total') > 0;
    });
    promtool(text);

    // Calls and turns.
    assert.equal(sum(m, 'tingshuo_calls_started_total'), 1);
    assert.equal(sum(m, 'tingshuo_calls_ended_total'), 1);
    assert.equal(sum(m, 'tingshuo_calls_active'), 0);
    assert.equal(sum(m, 'tingshuo_media_calls_active'), 0);
    assert.ok(sum(m, 'tingshuo_turns_total') >= 1);
    assert.ok(sum(m, 'tingshuo_voice_to_voice_seconds_count') >= 1);
    assert.ok(sum(m, 'tingshuo_turn_stage_seconds_count', { stage: 'asr' }) >= 1);
    assert.equal(sum(m, 'tingshuo_voice_to_voice_seconds_bucket', { le: '+Inf' }),
      sum(m, 'tingshuo_voice_to_voice_seconds_count'));

    // Media: a few seconds of speech came in, the reply went out, every worker ticked.
    assert.ok(sum(m, 'tingshuo_rtp_packets_received_total') > 100, 'RTP received');
    assert.ok(sum(m, 'tingshuo_rtp_packets_sent_total') > 100, 'RTP sent');
    assert.equal(sum(m, 'tingshuo_srtp_failures_total'), 0);
    for (const w of m.samples.filter((s) => s.name === 'tingshuo_media_tick_lag_seconds_count'))
      assert.ok(w.value > 0, `worker ${w.labels.worker} never ticked`);

    // Engines: one request of each kind at least, none failed.
    for (const kind of ['asr', 'llm', 'tts']) {
      assert.ok(sum(m, 'tingshuo_engine_requests_total', { kind, backend: 'openai' }) >= 1, kind);
      assert.equal(sum(m, 'tingshuo_engine_errors_total', { kind }), 0, `${kind} errors`);
    }
    assert.ok(sum(m, 'tingshuo_engine_request_duration_seconds_count', { kind: 'llm' }) >= 1);

    // HTTP client: by host and port of the fixture, never its path.
    const host = `127.0.0.1:${fx.port}`;
    assert.ok(sum(m, 'tingshuo_http_client_request_duration_seconds_count', { host, outcome: 'ok' }) >= 3);
    assert.equal(sum(m, 'tingshuo_http_client_request_duration_seconds_count', { host, outcome: 'timeout' }), 0);
    assert.ok(sum(m, 'tingshuo_http_client_first_byte_seconds_count', { host }) >= 3);
    assert.equal(sum(m, 'tingshuo_http_client_requests_in_flight', { host }), 0);
    assert.ok(sum(m, 'tingshuo_http_client_connections_total', { host }) >= 1);

    // Store and process.
    assert.equal(sum(m, 'tingshuo_store_connected'), 1);
    assert.equal(sum(m, 'tingshuo_store_events_dropped_total'), 0);
    assert.ok(sum(m, 'process_cpu_seconds_total') > 0);
    assert.ok(sum(m, 'process_resident_memory_bytes') > 1e6);
    assert.ok(sum(m, 'process_open_fds') > 3);
    assert.equal(sum(m, 'tingshuo_build_info'), 1);

    // No series is about one call.
    for (const s of m.samples)
      for (const v of Object.values(s.labels)) assert.ok(!v.includes(callId), `${s.name} names the call`);
    for (const s of m.samples)
      assert.ok(!Object.values(s.labels).some((v) => v.includes('/v1')), `${s.name} carries a URL path`);
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an LLM that never answers counts as engine and HTTP timeouts', { timeout: 120000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: 'hello there' });
  const dir = tempDir('tingshuo-metrics-');
  const srv = await startServer({
    args: [...VOICE, ...serviceArgs(fx, 'fixture:hang'), '--http-first-byte-timeout-ms', '300'], env: ENV,
  });
  try {
    const wav = speechWav(dir, 'q', 'Hello there.', { before: 0.5, after: 6.0 });
    const call = run(['call', srv.url, '--play', wav, '--timeout', '20'], { timeoutMs: 40000 });
    const host = `127.0.0.1:${fx.port}`;
    let m;
    const timedOut = await until(async () => {
      m = parse(await scrape(srv));
      return total(m, 'tingshuo_engine_timeouts_total', { kind: 'llm' }) >= 1;
    }, 30000);
    await call;
    assert.ok(timedOut, 'no LLM timeout counted');
    assert.ok(sum(m, 'tingshuo_engine_errors_total', { kind: 'llm' }) >= 1);
    assert.equal(sum(m, 'tingshuo_engine_timeouts_total', { kind: 'asr' }), 0);
    assert.ok(sum(m, 'tingshuo_http_client_request_duration_seconds_count', { host, outcome: 'timeout' }) >= 1);
    assert.ok(sum(m, 'tingshuo_http_client_retries_total', { host }) >= 1, 'a timeout is retried once');
    promtool(await scrape(srv));
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a reply abandoned by the caller counts as cancelled, not in flight', { timeout: 120000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: 'hello there' });
  const dir = tempDir('tingshuo-metrics-');
  const srv = await startServer({
    args: [...VOICE, ...serviceArgs(fx, 'fixture:hang'), '--resume-timeout-ms', '200'], env: ENV,
  });
  try {
    const wav = speechWav(dir, 'q', 'Hello there.', { before: 0.5, after: 30 });
    const client = spawn(BIN, ['call', srv.url, '--play', wav, '--timeout', '30'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => client.on('exit', resolve));
    const host = `127.0.0.1:${fx.port}`;
    // The LLM request is waiting for its first byte: the caller goes away.
    const waiting = await until(async () => {
      const m = parse(await scrape(srv));
      return total(m, 'tingshuo_http_client_requests_in_flight', { host }) === 1 &&
        total(m, 'tingshuo_engine_requests_total', { kind: 'llm' }) === 1;
    }, 30000);
    client.kill('SIGKILL');
    await exited;
    assert.ok(waiting, 'the LLM request never started');
    let m;
    const ended = await until(async () => {
      m = parse(await scrape(srv));
      return total(m, 'tingshuo_calls_ended_total') === 1;
    });
    assert.ok(ended, 'the call did not end');
    assert.equal(sum(m, 'tingshuo_engine_cancelled_total', { kind: 'llm' }), 1);
    assert.equal(sum(m, 'tingshuo_engine_errors_total', { kind: 'llm' }), 0);
    assert.equal(sum(m, 'tingshuo_engine_request_duration_seconds_count', { kind: 'llm' }), 0);
    assert.equal(sum(m, 'tingshuo_http_client_requests_in_flight', { host }), 0);
    assert.ok(sum(m, 'tingshuo_http_client_requests_cancelled_total', { host }) >= 1);
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

// Names a PromQL expression uses that look like this server's metrics.
function metricNames(expr) {
  return [...expr.matchAll(/\b((?:tingshuo|process)_[a-zA-Z0-9_]+)\b/g)].map((x) => x[1]);
}

test('the Grafana dashboard asks only for exported metrics', { timeout: 60000 }, async () => {
  const dash = JSON.parse(readFileSync(`${SOURCE_DIR}/deploy/grafana/tingshuo.json`, 'utf8'));
  assert.ok(dash.schemaVersion >= 36, 'schemaVersion');
  const dsVar = dash.templating.list.find((v) => v.type === 'datasource');
  assert.equal(dsVar?.query, 'prometheus');
  const fx = await startFixture();
  const srv = await startServer({ args: [...VOICE, ...serviceArgs(fx)], env: ENV });
  let m;
  try {
    m = parse(await scrape(srv));
  } finally {
    await srv.stop();
    await fx.stop();
  }
  const exported = (name) => {
    if (m.families.has(name)) return true;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && m.families.get(base) === 'histogram';
  };
  const panels = dash.panels.filter((p) => p.type !== 'row');
  assert.ok(panels.length >= 20);
  let exprs = 0;
  const cells = new Set();
  for (const p of panels) {
    assert.ok(p.title && p.targets?.length, `panel ${p.id} has a title and targets`);
    assert.equal(p.datasource.uid, '${datasource}');
    for (const t of p.targets) {
      const names = metricNames(t.expr);
      assert.ok(names.length > 0, `${p.title}: ${t.expr}`);
      for (const n of names) assert.ok(exported(n), `${p.title}: ${n} is not exported`);
      if (t.expr.includes('histogram_quantile')) {
        assert.match(t.expr, /_bucket\{/, `${p.title}: quantile of a histogram's buckets`);
        assert.match(t.expr, /by \([^)]*\ble\b[^)]*\)/, `${p.title}: the sum keeps le`);
      }
      exprs++;
    }
    // Panels do not overlap on the 24-column grid.
    const g = p.gridPos;
    for (let x = g.x; x < g.x + g.w; x++)
      for (let y = g.y; y < g.y + g.h; y++) {
        assert.ok(!cells.has(`${x},${y}`), `${p.title} overlaps another panel`);
        cells.add(`${x},${y}`);
      }
  }
  // Every family the server exports has a panel, except the informational ones.
  const used = new Set(panels.flatMap((p) => p.targets.flatMap((t) => metricNames(t.expr)))
    .map((n) => n.replace(/_(bucket|sum|count)$/, '')));
  const unused = [...m.families.keys()].filter((f) => !used.has(f));
  assert.deepEqual(unused, []);
  assert.ok(exprs >= 40);
});
