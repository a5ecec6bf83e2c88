// `tingshuo bench`: a short load run against the echo agent must complete
// with every call connected and answered, and write JSON whose figures are
// sane: voice-to-voice about the echo agent's pause, no lost frames on
// loopback, the server's CPU and memory read from /proc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, run, tempDir } from '../lib/harness.mjs';

test('5 calls for 10 s against the echo agent', async () => {
  const dir = tempDir('tingshuo-bench-');
  const srv = await startServer({ args: ['--agent', 'echo'] });
  try {
    const json = join(dir, 'bench.json');
    const res = await run(['bench', srv.url, '--calls', '5', '--duration', '10', '--json', json,
      '--server-pid', String(srv.child.pid)], { timeoutMs: 60000 });
    assert.equal(res.code, 0, `exit ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    assert.match(res.stdout, /voice-to-voice \(raw\)\s+p50/);
    assert.match(res.stdout, /outbound jitter/);
    const r = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(r.calls, 5);
    assert.equal(r.connected, 5);
    assert.equal(r.failed_calls, 0);
    assert.deepEqual(r.failures, []);
    assert.ok(r.machine.cpus >= 1 && r.machine.cpu_model.length > 0);
    assert.ok(r.setup_ms.p99 > 0 && r.setup_ms.p99 < 5000, `setup ${JSON.stringify(r.setup_ms)}`);

    // Every call gets at least one turn in 10 s, and the echo answers it.
    assert.ok(r.turns >= 5, `turns ${r.turns}`);
    assert.equal(r.unanswered_turns, 0);
    const v2v = r.voice_to_voice_ms.raw;
    assert.ok(v2v.n >= 5, `v2v samples ${v2v.n}`);
    // The echo agent waits 600 ms of silence, then plays from 100 ms before the speech.
    assert.ok(v2v.p50 > 500 && v2v.p50 < 1500, `v2v p50 ${v2v.p50}`);
    assert.ok(v2v.p50 <= v2v.p95 && v2v.p95 <= v2v.p99);
    assert.equal(r.voice_to_voice_ms.adjusted, null); // the echo agent sends no latency events
    assert.equal(typeof r.barge_in.attempts, 'number');
    assert.equal(r.false_interruptions, 0);

    // 50 frames a second per call, all of them arriving on loopback.
    const f = r.frames;
    assert.ok(f.expected > 5 * 9 * 50 * 0.9, `expected ${f.expected}`);
    assert.ok(f.received >= f.expected - 5);
    assert.ok(f.lost_ratio < 0.01, `lost ${f.lost_ratio}`);
    assert.ok(f.late_ratio < 0.05, `late ${f.late_ratio}`);
    assert.ok(r.outbound_jitter_ms.p50 >= 0 && r.outbound_jitter_ms.p50 < 10);
    assert.ok(r.outbound_jitter_ms.p99 >= r.outbound_jitter_ms.p50);

    assert.ok(r.server.pid === srv.child.pid);
    assert.ok(r.server.cpu_percent >= 0 && r.server.cpu_percent < 200, `cpu ${r.server.cpu_percent}`);
    assert.ok(r.server.rss_peak_kb >= r.server.rss_idle_kb && r.server.rss_idle_kb > 1000);
    assert.ok(r.client.cpu_percent >= 0);
    assert.equal(typeof r.pass, 'boolean');
    // The codec floor: one call's Opus decode (16 kHz) and encode (48 kHz), timed here.
    const cf = r.codec_floor;
    assert.equal(cf.decode_rate, 16000);
    assert.ok(cf.decode_us > 0 && cf.encode_us > 0, JSON.stringify(cf));
    assert.ok(Math.abs(cf.percent_of_core - 100 * 50 * (cf.decode_us + cf.encode_us) / 1e6) < 0.01);
    assert.match(res.stdout, /codec floor\s+[\d.]+% of a core per call/);
    assert.match(res.stdout, /server memory\s+[\d.]+ MB before the first call, [\d.]+ MB peak: \d+ KB per call/);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bench refuses bad flags and reports a dead server as failed calls', async () => {
  const usage = await run(['bench', 'ws://127.0.0.1:9/ws', '--calls', 'many']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--calls: expected a whole number/);
  const echo = await run(['bench', 'ws://127.0.0.1:9/ws', '--echo', '0.5']);
  assert.equal(echo.code, 2);
  assert.match(echo.stderr, /--echo: expected GAIN:DELAY_MS/);
  const dead = await run(['bench', 'ws://127.0.0.1:9/ws', '--calls', '2', '--duration', '2'], { timeoutMs: 30000 });
  assert.equal(dead.code, 1);
  assert.match(dead.stdout, /0 connected, 2 failed/);
  assert.match(dead.stdout, /failure\s+cannot connect to ws:\/\/127\.0\.0\.1:9\/ws/);
  assert.match(dead.stdout, /bounds\s+FAIL/);
  // The floor alone needs no server.
  const floor = await run(['bench', '--codec-floor'], { timeoutMs: 30000 });
  assert.equal(floor.code, 0, floor.stderr);
  assert.match(floor.stdout, /codec floor\s+[\d.]+% of a core per call: Opus decode at 16 kHz/);
});
