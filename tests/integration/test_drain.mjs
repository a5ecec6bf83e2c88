// Draining a node (docs/deploy.md#draining): SIGTERM or POST /api/drain makes
// the server take no new calls (an offer gets `busy`), answer 503 on /healthz
// (200 on /livez), let the calls in progress go on to their own end, then exit
// 0; drain_timeout_s bounds that, and what is left then ends with "server
// shutting down". A second SIGTERM, a SIGINT, or drain_timeout_s = 0 stop at
// once. The callers are `tingshuo call`, whose calls end by themselves once
// the file is played and the reply heard, and plain WebSocket offers, which
// make a call whose media never starts (it waits for ICE until hung up).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, tempDir, speechWav, wsConnect } from '../lib/harness.mjs';
import { placeCall } from '../lib/call.mjs';

const OFFER = readFileSync(join(process.env.TS_SOURCE_DIR, 'tests/fixtures/sdp/chrome_offer.sdp'), 'utf8');
const GREETING = 'Hello, this is the test line.';
// The cheap engines: these tests are about the calls' lives, not about what is said.
const VOICE = ['--agent', 'voice', '--asr', 'scripted', '--llm', 'fixed', '--tts', 'tone',
  '--greeting', GREETING, '--idle-prompt-ms', '0', '--idle-hangup-ms', '0',
  '--setup-timeout-ms', '60000'];
const TOKEN = 'drain-admin-token-0123456789abcdef';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls `pred` until it returns something truthy; fails after timeoutMs (generous: the
// machine is shared and the sanitizer build is slow, so this bounds a hang, not a speed).
async function until(what, pred, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await pred();
    if (v) return v;
    await sleep(50);
  }
  assert.fail(`${what}: not within ${timeoutMs} ms`);
}

// The server's exit, watched from now; stop() afterwards only cleans up and checks status 0.
function exitOf(srv) {
  return new Promise((resolve) => srv.child.on('exit', (code, signal) => resolve({ code, signal })));
}

async function health(srv, path = '/healthz') {
  const r = await fetch(new URL(path, srv.url));
  return { status: r.status, body: await r.json() };
}

async function draining(srv) {
  const r = await fetch(new URL('/metrics', srv.url));
  const m = /^tingshuo_draining (\d+)$/m.exec(await r.text());
  return m && Number(m[1]);
}

// A call made over a bare WebSocket: answered, counted, never connected.
async function wsCall(srv) {
  const c = await wsConnect(srv.wsUrl());
  await c.expect('hello');
  c.send({ type: 'offer', sdp: OFFER });
  const m = await c.next(10000);
  return { c, m };
}

function quietWav(dir, seconds) {
  const wav = join(dir, `quiet${seconds}.wav`);
  execFileSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', wav, 'trim', '0', String(seconds)]);
  return wav;
}

test('SIGTERM: the call in progress goes on to its own end, new calls are busy, /healthz 503, exit 0', async () => {
  const dir = tempDir('tingshuo-drain-');
  const srv = await startServer({ args: [...VOICE, '--drain-timeout-s', '120'] });
  const exited = exitOf(srv);
  let call;
  try {
    // The greeting, then a question after it: its reply comes during the drain.
    const wav = speechWav(dir, 'question', 'What is the weather like today?', { before: 2.5, after: 3 });
    call = placeCall(srv.url, wav, { timeoutS: 60 });
    await until('the greeting', () => call.replies.length >= 1);
    assert.equal((await health(srv)).status, 200);
    assert.equal(await draining(srv), 0);

    const termAt = Date.now();
    srv.child.kill('SIGTERM');
    const h = await until('/healthz 503', async () => { const x = await health(srv); return x.status === 503 && x; });
    assert.equal(h.body.status, 'draining');
    assert.equal(h.body.calls, 1);
    const live = await health(srv, '/livez');
    assert.equal(live.status, 200, '/livez: a draining server is alive');
    assert.equal(live.body.status, 'draining');
    assert.equal(await draining(srv), 1);
    assert.match(srv.stderr, /draining: 1 call in progress, at most 120 s/);

    const { c, m } = await wsCall(srv);
    assert.equal(m.type, 'error', JSON.stringify(m));
    assert.equal(m.code, 'busy');
    assert.match(m.message, /draining/);
    c.close();

    assert.equal(await call.done, 0, `the call failed:\n${call.dump()}`);
    assert.ok(call.replies.some((r) => r.at > termAt), `no reply heard during the drain:\n${call.dump()}`);
    assert.ok(!call.ends.includes('server shutting down'), call.dump());
    let timer;
    const late = new Promise((r) => { timer = setTimeout(() => r({ code: 'still running' }), 30000); });
    const { code, signal } = await Promise.race([exited, late]);
    clearTimeout(timer);
    assert.equal(code, 0, `server exit ${code} (${signal}):\n${srv.stderr}`);
    assert.match(srv.stderr, /draining: a call ended, 0 in progress/);
    assert.match(srv.stderr, /drained: no call in progress/);
  } finally {
    call?.child.kill('SIGKILL');
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('drain_timeout_s reached with a call up: it ends with "server shutting down", exit 0', async () => {
  const dir = tempDir('tingshuo-drain-');
  const srv = await startServer({ args: [...VOICE, '--drain-timeout-s', '1'] });
  const exited = exitOf(srv);
  let call;
  try {
    call = placeCall(srv.url, quietWav(dir, 60), { timeoutS: 60 });
    await until('the greeting', () => call.replies.length >= 1);
    srv.child.kill('SIGTERM');
    await call.done;
    assert.deepEqual(call.ends, ['server shutting down'], call.dump());
    const { code, signal } = await exited;
    assert.equal(code, 0, `server exit ${code} (${signal}):\n${srv.stderr}`);
    assert.match(srv.stderr, /draining: 1 call in progress, at most 1 s/);
    assert.match(srv.stderr, /drain_timeout_s \(1 s\) reached with 1 call in progress/);
  } finally {
    call?.child.kill('SIGKILL');
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a second SIGTERM during a drain stops at once', async () => {
  const dir = tempDir('tingshuo-drain-');
  const srv = await startServer({ args: [...VOICE, '--drain-timeout-s', '120'] });
  const exited = exitOf(srv);
  let call;
  try {
    call = placeCall(srv.url, quietWav(dir, 60), { timeoutS: 60 });
    await until('the greeting', () => call.replies.length >= 1);
    srv.child.kill('SIGTERM');
    await until('/healthz 503', async () => (await health(srv)).status === 503);
    srv.child.kill('SIGTERM');
    await call.done;
    assert.deepEqual(call.ends, ['server shutting down'], call.dump());
    const { code, signal } = await exited;
    assert.equal(code, 0, `server exit ${code} (${signal}):\n${srv.stderr}`);
  } finally {
    call?.child.kill('SIGKILL');
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('drain_timeout_s = 0: SIGTERM ends the calls at once', async () => {
  const srv = await startServer({ args: [...VOICE, '--drain-timeout-s', '0'] });
  const exited = exitOf(srv);
  try {
    const { c, m } = await wsCall(srv);
    assert.equal(m.type, 'answer', JSON.stringify(m));
    srv.child.kill('SIGTERM');
    assert.equal((await c.expect('end', 10000)).reason, 'server shutting down');
    assert.equal((await exited).code, 0, srv.stderr);
  } finally {
    await srv.stop();
  }
});

test('POST /api/drain needs admin access, then does what SIGTERM does', async () => {
  const srv = await startServer({ args: VOICE, env: { TINGSHUO_ADMIN_TOKEN: TOKEN } });
  const exited = exitOf(srv);
  const drain = (headers = {}, method = 'POST') =>
    fetch(new URL('/api/drain', srv.url), { method, headers });
  const auth = { Authorization: `Bearer ${TOKEN}` };
  try {
    const first = await wsCall(srv);
    assert.equal(first.m.type, 'answer', JSON.stringify(first.m));

    assert.equal((await drain()).status, 401, 'no token');
    assert.equal((await drain({ Authorization: 'Bearer wrong' })).status, 401, 'a wrong token');
    assert.equal((await drain({ ...auth, Origin: 'https://evil.example' })).status, 403, 'cross-site');
    assert.equal((await drain(auth, 'GET')).status, 405);
    assert.equal((await health(srv)).status, 200, 'refused requests drain nothing');

    const r = await drain(auth);
    assert.equal(r.status, 202);
    assert.deepEqual(await r.json(), { status: 'draining', calls: 1, drain_timeout_s: 300 });
    const h = await health(srv);
    assert.equal(h.status, 503);
    assert.equal(h.body.status, 'draining');
    assert.equal((await drain(auth)).status, 202, 'asking again changes nothing');

    const second = await wsCall(srv);
    assert.equal(second.m.code, 'busy', JSON.stringify(second.m));
    second.c.close();

    // The service manager's SIGTERM after the request joins the drain, it does not cut it short.
    srv.child.kill('SIGTERM');
    await until('SIGTERM noted', () => /already draining/.test(srv.stderr));
    assert.equal((await health(srv)).status, 503);

    first.c.send({ type: 'hangup' });
    assert.equal((await first.c.expect('end')).reason, 'hangup');
    const { code, signal } = await exited;
    assert.equal(code, 0, `server exit ${code} (${signal}):\n${srv.stderr}`);
  } finally {
    await srv.stop();
  }
});

test('POST /api/drain without admin_token: loopback only; on an idle server it exits 0 after answering', async () => {
  const srv = await startServer({ args: ['--agent', 'echo'] });
  const exited = exitOf(srv);
  try {
    const proxied = await fetch(new URL('/api/drain', srv.url),
      { method: 'POST', headers: { 'X-Forwarded-For': '203.0.113.9' } });
    assert.equal(proxied.status, 403);
    assert.equal((await health(srv)).status, 200);
    const r = await fetch(new URL('/api/drain', srv.url), { method: 'POST' });
    assert.equal(r.status, 202);
    assert.deepEqual(await r.json(), { status: 'draining', calls: 0, drain_timeout_s: 300 });
    assert.equal((await exited).code, 0, srv.stderr);
  } finally {
    await srv.stop();
  }
});
