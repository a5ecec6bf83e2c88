// Call records end to end, with the voice agent on the embedded engines and
// the C client as the caller: what the store keeps is what the call's events
// said; a SIGKILL of the server loses at most the turn in progress; a
// PostgreSQL outage during a call loses nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { BIN, SOURCE_DIR, startServer, tempDir, speechWav } from '../lib/harness.mjs';

const GREETING = 'Hello, this is the test line.';
const QUESTIONS = ['What is seven plus five?', 'What is twelve times two?', 'What is nine minus four?'];

// The questions one after another, each followed by enough silence for its answer.
function questionsWav(dir, n) {
  // The first waits for the greeting to end, so that it is not heard as an interruption.
  const parts = QUESTIONS.slice(0, n).map((q, i) => speechWav(dir, `q${i}`, q, { before: i ? 0.4 : 3.0, after: 4.5 }));
  const out = join(dir, 'questions.wav');
  execFileSync('sox', [...parts, out]);
  return out;
}

// Runs `tingshuo call`, collecting its events as they are printed; onLine may react to them.
function placeCall(url, wav, onLine = () => {}) {
  const child = spawn(BIN, ['call', url, '--play', wav, '--timeout', '90']);
  const ev = { id: null, finals: [], replies: [], latency: [], stdout: '', stderr: '' };
  let buf = '';
  child.stdout.on('data', (d) => {
    ev.stdout += d;
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      let m;
      if ((m = /\] answer: call ([0-9a-f]+)$/.exec(line))) ev.id = m[1];
      if ((m = /\] transcript \(final\): "(.*)"$/.exec(line))) ev.finals.push(m[1]);
      if ((m = /\] reply(?: \(interrupted\))?: "(.*)"$/.exec(line))) ev.replies.push(m[1]);
      if ((m = /\] latency turn (\d+): voice_to_voice (\d+) ms/.exec(line)))
        ev.latency.push({ turn: Number(m[1]), v2v: Number(m[2]) });
      onLine(line, ev);
    }
  });
  child.stderr.on('data', (d) => { ev.stderr += d; });
  ev.done = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  ev.child = child;
  return ev;
}

async function getJson(srv, path) {
  const r = await fetch(srv.url.replace(/\/$/, '') + path);
  return { status: r.status, body: await r.json() };
}

// Polls until `pred` holds for the call's record (the store writes asynchronously).
async function waitForCall(srv, id, pred, timeoutMs = 15000) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < timeoutMs) {
    last = await getJson(srv, `/api/calls/${id}`).catch((e) => ({ status: 0, body: String(e) }));
    if (last.status === 200 && pred(last.body.call)) return last.body.call;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`record of call ${id} never matched; last answer: ${JSON.stringify(last)}`);
}

const callerTurns = (call) => call.turns.filter((t) => t.transcript !== null);

function assertMatchesEvents(call, ev) {
  assert.equal(call.turns[0].transcript, null, 'the greeting is a reply alone');
  assert.equal(call.turns[0].reply, GREETING);
  assert.deepEqual(call.turns.map((t) => t.index), call.turns.map((_, i) => i), 'indexes count from 0');
  assert.deepEqual(callerTurns(call).map((t) => t.transcript), ev.finals);
  assert.deepEqual(call.turns.map((t) => t.reply).filter((r) => r !== null), ev.replies);
  for (const { turn, v2v } of ev.latency.filter((l) => l.turn > 0)) {
    const row = callerTurns(call)[turn - 1];
    assert.ok(row, `no row for turn ${turn}`);
    assert.ok(Math.abs(row.voice_to_voice_ms - v2v) <= 0.5, `turn ${turn}: stored ${row.voice_to_voice_ms}, event ${v2v}`);
    for (const k of ['endpoint_ms', 'asr_ms', 'tts_first_audio_ms']) assert.equal(typeof row[k], 'number', k);
  }
}

test("a call's record holds its turns as its events told them", async () => {
  const dir = tempDir('tingshuo-rec-');
  const srv = await startServer({ args: ['--greeting', GREETING] });
  try {
    const ev = placeCall(srv.url, questionsWav(dir, 2));
    assert.equal(await ev.done, 0, `call failed:\n${ev.stdout}\n${ev.stderr}`);
    assert.ok(ev.finals.length >= 2, ev.stdout);
    const call = await waitForCall(srv, ev.id, (c) => c.ended_at && c.turns.length >= 1 + ev.finals.length);
    assertMatchesEvents(call, ev);
    assert.equal(call.end_reason, 'hangup');
    assert.equal(call.agent, 'voice');
    assert.equal(call.remote_addr, '127.0.0.1');
    assert.equal(call.engines.asr, 'pocketsphinx');
    assert.equal(call.engines.llm, 'local');
    assert.ok(call.packets_received > 100, `packets_received ${call.packets_received}`);
    assert.ok(Date.parse(call.connected_at) >= Date.parse(call.created_at));
    assert.ok(Date.parse(call.ended_at) > Date.parse(call.connected_at));
    const list = await getJson(srv, '/api/calls');
    assert.equal(list.body.calls[0].id, ev.id, 'the newest call comes first');
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGKILL during a call keeps every turn finished before it', async () => {
  const dir = tempDir('tingshuo-rec-');
  const dataDir = tempDir('tingshuo-data-');
  let srv = await startServer({ args: ['--greeting', GREETING], dataDir });
  try {
    let killed = false;
    const ev = placeCall(srv.url, questionsWav(dir, 3), (line, e) => {
      // The greeting and the first answer heard: the server dies as the caller starts speaking
      // again, the turn then in progress.
      if (!killed && e.replies.length >= 2 && /\] state: user_speaking$/.test(line)) {
        killed = true;
        srv.child.kill('SIGKILL');
      }
    });
    await ev.done;
    assert.ok(killed, `the call ended before an answer and more speech:\n${ev.stdout}\n${ev.stderr}`);
    srv = await startServer({ args: ['--greeting', GREETING], dataDir });
    const call = await waitForCall(srv, ev.id, (c) => c.ended_at !== null);
    assert.equal(call.end_reason, 'server stopped');
    assert.ok(callerTurns(call).length >= 1, JSON.stringify(call.turns));
    const heard = { ...ev, finals: ev.finals.slice(0, 1), replies: ev.replies.slice(0, 2), latency: ev.latency.filter((l) => l.turn <= 1) };
    const kept = { ...call, turns: call.turns.slice(0, 2) };
    assertMatchesEvents(kept, heard);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
});

// PostgreSQL started by the test itself (tests/lib/pg.sh), stopped while the
// call goes on, started again after it: every turn reaches the database.
test('PostgreSQL down during a call: every turn is stored once it is back', async () => {
  const dir = tempDir('tingshuo-rec-');
  const pgDir = join(tempDir('tingshuo-pg-'), 'pg');
  const pg = (...a) => execFileSync('bash', [join(SOURCE_DIR, 'tests/lib/pg.sh'), ...a, pgDir], { encoding: 'utf8' }).trim().split('\n').pop();
  const url = pg('start');
  let srv;
  try {
    srv = await startServer({ args: ['--greeting', GREETING], env: { TINGSHUO_DATABASE_URL: url } });
    let stopped = false;
    const ev = placeCall(srv.url, questionsWav(dir, 3), (line, e) => {
      if (!stopped && e.replies.length === 2) { // the greeting and the first answer
        stopped = true;
        pg('halt');
      }
    });
    assert.equal(await ev.done, 0, `call failed:\n${ev.stdout}\n${ev.stderr}`);
    assert.ok(stopped);
    const down = await getJson(srv, `/api/calls/${ev.id}`);
    assert.equal(down.status, 503, 'reads answer 503 while the database is down');
    pg('start');
    const call = await waitForCall(srv, ev.id, (c) => c.ended_at && callerTurns(c).length >= ev.finals.length, 30000);
    assertMatchesEvents(call, ev);
    assert.equal(call.end_reason, 'hangup');
  } finally {
    if (srv) await srv.stop();
    try { pg('stop'); } catch { /* already stopped */ }
    rmSync(dir, { recursive: true, force: true });
    rmSync(join(pgDir, '..'), { recursive: true, force: true });
  }
});

test('an echo call is stored too, with no turns', async () => {
  const dir = tempDir('tingshuo-rec-');
  const srv = await startServer({ args: ['--agent', 'echo'] });
  try {
    const wav = speechWav(dir, 'echo', 'Testing the echo line.', { before: 0.3, after: 2.0 });
    const ev = placeCall(srv.url, wav);
    assert.equal(await ev.done, 0, `call failed:\n${ev.stdout}\n${ev.stderr}`);
    const call = await waitForCall(srv, ev.id, (c) => c.ended_at !== null);
    assert.equal(call.agent, 'echo');
    assert.equal(call.end_reason, 'hangup');
    assert.deepEqual(call.turns, []);
    assert.equal(call.engines.asr, null, 'the echo agent runs no engines');
    assert.ok(call.packets_received > 50, `packets_received ${call.packets_received}`);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
