// The history API against the real server: who gets in (loopback only
// without an admin token; with one, the token from everyone, as a Bearer
// header or the login cookie, with the CSRF rules), and what it answers
// about real calls made with the C client: paging by cursor, every filter,
// text search, one call, delete, the recording with HTTP ranges, the error
// statuses, body limits, and the separate metrics listener.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { spawn, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync, existsSync, rmSync } from 'node:fs';
import { BIN, SOURCE_DIR, startServer, tempDir } from '../lib/harness.mjs';

const TOKEN = 'test-admin-token-0123456789abcdef';
const BEARER = { Authorization: `Bearer ${TOKEN}` };

// One request on its own connection; resolves {status, headers, buf, text, json()}.
function request(base, path, { method = 'GET', headers = {}, body } = {}) {
  if (body !== undefined && !headers['Transfer-Encoding'])
    headers = { 'Content-Length': String(Buffer.byteLength(body)), ...headers };
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(path, base), { method, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, buf, text: buf.toString(),
          json: () => JSON.parse(buf.toString()) });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const json = (obj) => ({ body: JSON.stringify(obj), headers: { 'Content-Type': 'application/json' } });
const form = (s) => ({ body: s, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });

function silenceWav(dir, name, seconds) {
  const path = join(dir, `${name}.wav`);
  execFileSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', path, 'trim', '0', String(seconds)]);
  return path;
}

// `tingshuo call`; resolves once the server has answered, with the call's id and its exit.
function placeCall(url, wav, config) {
  const child = spawn(BIN, ['call', url, '--play', wav, '--config', JSON.stringify(config), '--timeout', '40']);
  let out = '', err = '';
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve({ code, out, err })));
  const answered = new Promise((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /\] answer: call ([0-9a-f]+)$/m.exec(out);
      if (m) resolve(m[1]);
    });
    exited.then(() => reject(new Error(`call ended unanswered:\n${out}\n${err}`)));
  });
  return { answered, exited };
}

// A server with an admin token and recordings, and three real calls on it:
// A greets "Marmalade line." and is hung up by the caller, B greets
// "Lighthouse line.", C has no greeting and ends idle. Made in that order,
// so newest first is C, B, A.
const calls = {};
let srv, dir;

before(async () => {
  dir = tempDir('tingshuo-api-');
  srv = await startServer({
    args: ['--agent', 'voice', '--record-calls', 'on', '--greeting', '', '--idle-prompt-ms', '0',
      '--idle-hangup-ms', '6000', '--metrics-listen', '127.0.0.1:0'],
    env: { TINGSHUO_ADMIN_TOKEN: TOKEN },
  });
  const wav = silenceWav(dir, 'quiet', 1);
  const a = placeCall(srv.url, wav, { greeting: 'Marmalade line.' });
  calls.A = await a.answered;
  const b = placeCall(srv.url, wav, { greeting: 'Lighthouse line.' });
  calls.B = await b.answered;
  const c = placeCall(srv.url, wav, { greeting: '' });
  calls.C = await c.answered;
  for (const [name, p] of [['A', a], ['B', b]]) {
    const r = await p.exited;
    assert.equal(r.code, 0, `call ${name} failed:\n${r.out}\n${r.err}`);
  }
  const rc = await c.exited;
  assert.match(rc.out, /end: idle|idle/, `call C did not end idle:\n${rc.out}\n${rc.err}`);
  // The store writes on its own thread: wait until every call is ended and its recording stored.
  const t0 = Date.now();
  for (;;) {
    const list = (await request(srv.url, '/api/calls', { headers: BEARER })).json();
    const done = list.calls.filter((x) => Object.values(calls).includes(x.id) && x.ended_at && x.recording);
    if (done.length === 3) break;
    if (Date.now() - t0 > 15000) assert.fail(`records incomplete: ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
});

after(async () => {
  if (srv) await srv.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ids = (r) => r.json().calls.map((c) => c.id);

// A call's recording once the recorder has finished it (its last Ogg page ends the stream).
async function finishedRecording(id) {
  const path = join(srv.dataDir, 'recordings', `${id}.ogg`);
  for (const t0 = Date.now(); Date.now() - t0 < 10000; await new Promise((r) => setTimeout(r, 100))) {
    if (!existsSync(path)) continue;
    const buf = readFileSync(path);
    const last = buf.lastIndexOf('OggS');
    if (last >= 0 && buf[last + 5] & 4) return buf;
  }
  assert.fail(`${path} was not finished in time`);
}

test('with admin_token set: no token or a wrong one is 401, the Bearer token gets in', async () => {
  for (const path of ['/api/calls', `/api/calls/${calls.A}`, `/api/calls/${calls.A}/recording`, '/metrics']) {
    const none = await request(srv.url, path);
    assert.equal(none.status, 401, path);
    assert.match(none.headers['www-authenticate'], /^Bearer/);
    assert.deepEqual(none.json(), { error: 'the admin token is required' });
    assert.equal((await request(srv.url, path, { headers: { Authorization: `Bearer ${TOKEN}x` } })).status, 401);
    assert.equal((await request(srv.url, path, { headers: { Authorization: `Basic ${TOKEN}` } })).status, 401);
  }
  const ok = await request(srv.url, '/api/calls', { headers: { Authorization: `bearer  ${TOKEN} ` } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['cache-control'], 'no-store');
  // Health stays open: load balancers probe it without credentials.
  assert.equal((await request(srv.url, '/healthz')).status, 200);
});

test('login sets a session cookie that opens the API, CSRF rules hold, logout clears it', async () => {
  const wrong = await request(srv.url, '/api/login', { method: 'POST', ...json({ token: 'nope-nope-nope-nope' }) });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers['set-cookie'], undefined);
  assert.equal((await request(srv.url, '/api/login', { method: 'POST', ...json({ tok: TOKEN }) })).status, 400);
  assert.equal((await request(srv.url, '/api/login', { method: 'POST', body: TOKEN, headers: { 'Content-Type': 'text/plain' } })).status, 415);

  const login = await request(srv.url, '/api/login', { method: 'POST', ...json({ token: TOKEN }) });
  assert.equal(login.status, 200);
  const setCookie = login.headers['set-cookie'][0];
  assert.match(setCookie, /^tingshuo_session=v1\.\d+\.[0-9a-f]{64}; /);
  for (const attr of ['Path=/', 'Max-Age=43200', 'HttpOnly', 'SameSite=Strict'])
    assert.ok(setCookie.split('; ').includes(attr), `${attr} in ${setCookie}`);
  assert.ok(!/Secure/.test(setCookie), 'no Secure flag over plain HTTP');
  const expires = Date.parse(login.json().expires_at);
  assert.ok(Math.abs(expires - Date.now() - 12 * 3600e3) < 60e3, login.text);
  const cookie = setCookie.split(';')[0];

  assert.equal((await request(srv.url, '/api/calls', { headers: { Cookie: `other=1; ${cookie}` } })).status, 200);
  const tampered = cookie.replace(/[0-9a-f]$/, (c) => (c === '0' ? '1' : '0'));
  assert.equal((await request(srv.url, '/api/calls', { headers: { Cookie: tampered } })).status, 401);
  const later = cookie.replace(/v1\.(\d+)\./, (_, ms) => `v1.${Number(ms) + 1000}.`);
  assert.equal((await request(srv.url, '/api/calls', { headers: { Cookie: later } })).status, 401, 'the expiry is signed');

  // DELETE with the cookie: no Origin, or another site's, is refused; the page's own Origin passes.
  const host = new URL(srv.url).host;
  const gone = 'ffffffffffffffff';
  const noOrigin = await request(srv.url, `/api/calls/${gone}`, { method: 'DELETE', headers: { Cookie: cookie } });
  assert.equal(noOrigin.status, 403);
  const evil = await request(srv.url, `/api/calls/${gone}`, { method: 'DELETE', headers: { Cookie: cookie, Origin: 'http://evil.example' } });
  assert.equal(evil.status, 403);
  const same = await request(srv.url, `/api/calls/${gone}`, { method: 'DELETE', headers: { Cookie: cookie, Origin: `http://${host}` } });
  assert.equal(same.status, 404, 'past the access checks, to the store');
  // A Bearer client needs no Origin; another site's Origin is refused all the same.
  assert.equal((await request(srv.url, `/api/calls/${gone}`, { method: 'DELETE', headers: BEARER })).status, 404);
  assert.equal((await request(srv.url, `/api/calls/${gone}`, { method: 'DELETE', headers: { ...BEARER, Origin: 'http://evil.example' } })).status, 403);

  const logout = await request(srv.url, '/api/logout', { method: 'POST', headers: { Cookie: cookie, Origin: `http://${host}`, 'Content-Length': '0' } });
  assert.equal(logout.status, 200);
  assert.match(logout.headers['set-cookie'][0], /^tingshuo_session=; Path=\/; Max-Age=0; HttpOnly; SameSite=Strict$/);
});

test('the history page: a sign-in form without a session, the page with one', async () => {
  const page = await request(srv.url, '/history');
  assert.equal(page.status, 401);
  assert.match(page.headers['content-type'], /^text\/html/);
  assert.match(page.text, /<form method="post" action="\/api\/login">/);
  assert.match(page.text, /name="next" value="\/history"/);
  assert.match(page.headers['content-security-policy'], /frame-ancestors 'none'/);
  const zh = await request(srv.url, `/history/${calls.A}`, { headers: { 'Accept-Language': 'zh-CN,zh;q=0.9' } });
  assert.equal(zh.status, 401);
  assert.match(zh.text, /<html lang="zh-CN">/);
  assert.match(zh.text, /管理令牌/);
  assert.match(zh.text, new RegExp(`name="next" value="/history/${calls.A}"`));
  assert.equal((await request(srv.url, '/history.html')).status, 401, 'the file is guarded too');

  // The form posts back here; success returns to the page it came from, never elsewhere.
  const bad = await request(srv.url, '/api/login', { method: 'POST', ...form('token=wrong&next=%2Fhistory') });
  assert.equal(bad.status, 401);
  assert.match(bad.text, /That token is not right/);
  const good = await request(srv.url, '/api/login', { method: 'POST', ...form(`token=${encodeURIComponent(TOKEN)}&next=${encodeURIComponent(`/history/${calls.A}`)}`) });
  assert.equal(good.status, 303);
  assert.equal(good.headers.location, `/history/${calls.A}`);
  const cookie = good.headers['set-cookie'][0].split(';')[0];
  const away = await request(srv.url, '/api/login', { method: 'POST', ...form(`token=${encodeURIComponent(TOKEN)}&next=%2F%2Fevil.example%2F`) });
  assert.equal(away.headers.location, '/history');

  const html = readFileSync(join(SOURCE_DIR, 'web', 'history.html'), 'utf8');
  for (const path of ['/history', `/history/${calls.B}`]) {
    const r = await request(srv.url, path, { headers: { Cookie: cookie } });
    assert.equal(r.status, 200, path);
    assert.equal(r.text, html);
  }
  assert.equal((await request(srv.url, '/history/not-an-id', { headers: { Cookie: cookie } })).status, 404);
});

test('the list: newest first, paged by cursor', async () => {
  const all = await request(srv.url, '/api/calls', { headers: BEARER });
  assert.deepEqual(ids(all), [calls.C, calls.B, calls.A]);
  assert.equal(all.json().next_cursor, null);
  const a = all.json().calls.find((c) => c.id === calls.A);
  for (const k of ['created_at', 'connected_at', 'ended_at', 'duration_s', 'end_reason', 'remote_addr',
    'agent', 'language', 'turns', 'preview', 'recording'])
    assert.ok(k in a, `summary has ${k}`);
  assert.equal(a.recording, true);

  const seen = [];
  let cursor = null, pages = 0;
  do {
    const q = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const page = (await request(srv.url, `/api/calls?limit=1${q}`, { headers: BEARER })).json();
    assert.ok(page.calls.length <= 1);
    seen.push(...page.calls.map((c) => c.id));
    cursor = page.next_cursor;
    pages++;
  } while (cursor && pages < 10);
  assert.deepEqual(seen, [calls.C, calls.B, calls.A]);
  assert.equal(pages, 3);

  const two = (await request(srv.url, '/api/calls?limit=2', { headers: BEARER })).json();
  assert.deepEqual(two.calls.map((c) => c.id), [calls.C, calls.B]);
  const rest = (await request(srv.url, `/api/calls?limit=2&cursor=${encodeURIComponent(two.next_cursor)}`, { headers: BEARER })).json();
  assert.deepEqual(rest.calls.map((c) => c.id), [calls.A]);
  assert.equal(rest.next_cursor, null);
});

test('filters: time range (ISO or epoch ms), end reason, text search', async () => {
  const get = async (q) => {
    const r = await request(srv.url, `/api/calls?${q}`, { headers: BEARER });
    assert.equal(r.status, 200, `${q}: ${r.text}`);
    return ids(r);
  };
  const b = (await request(srv.url, `/api/calls/${calls.B}`, { headers: BEARER })).json().call;
  const bMs = Date.parse(b.created_at);
  assert.deepEqual(await get(`from=${encodeURIComponent(b.created_at)}`), [calls.C, calls.B]);
  assert.deepEqual(await get(`to=${encodeURIComponent(b.created_at)}`), [calls.A], 'to is exclusive');
  assert.deepEqual(await get(`from=${bMs}&to=${bMs + 1}`), [calls.B]);
  const plus8 = new Date(bMs + 8 * 3600e3).toISOString().replace('Z', '+08:00');
  assert.deepEqual(await get(`from=${encodeURIComponent(plus8)}&to=${bMs + 1}`), [calls.B]);

  assert.deepEqual(await get('reason=idle'), [calls.C]);
  assert.deepEqual(await get('reason=hangup'), [calls.B, calls.A]);
  assert.deepEqual(await get('reason=goodbye'), []);
  assert.deepEqual(await get('reason=ice+timeout'), [], 'reasons may hold spaces');
  assert.deepEqual(await get('reason=ICE+restart+failed'), [], 'and capitals');

  assert.deepEqual(await get('q=marmalade'), [calls.A]);
  assert.deepEqual(await get('q=LIGHTHOUSE'), [calls.B], 'any case');
  assert.deepEqual(await get('q=line'), [calls.B, calls.A]);
  assert.deepEqual(await get('q=zebra'), []);
  assert.deepEqual(await get(`q=${encodeURIComponent('果酱')}`), [], 'UTF-8 text is a fine query');
  assert.deepEqual(await get('q=line&reason=hangup&limit=1'), [calls.B]);
});

test('bad filters and cursors are 400, unknown calls and bad ids 404, wrong methods 405', async () => {
  for (const q of ['limit=0', 'limit=201', 'limit=abc', 'from=yesterday', 'to=2026-13-01',
    `from=${Date.now()}&to=${Date.now() - 1000}`, 'reason=x%27%3B--', `reason=${'a'.repeat(65)}`, `q=${'x'.repeat(201)}`,
    'cursor=not-a-cursor', 'q=%FF%FE', 'q=%ED%A0%80', 'q=%C0%AF']) {
    const r = await request(srv.url, `/api/calls?${q}`, { headers: BEARER });
    assert.equal(r.status, 400, `${q}: ${r.text}`);
    assert.equal(typeof r.json().error, 'string');
  }
  for (const path of ['/api/calls/0123456789abcdef0123', '/api/calls/XYZ', '/api/calls/abc/other',
    `/api/calls/${'a'.repeat(40)}`, '/api/calls/', '/api/nothing', '/api/calls/0123456789abcdef0123/recording'])
    assert.equal((await request(srv.url, path, { headers: BEARER })).status, 404, path);
  const put = await request(srv.url, '/api/calls', { method: 'PUT', headers: { ...BEARER, 'Content-Length': '0' } });
  assert.equal(put.status, 405);
  assert.equal(put.headers.allow, 'GET, HEAD');
  const post = await request(srv.url, `/api/calls/${calls.A}`, { method: 'POST', headers: { ...BEARER, 'Content-Length': '0' } });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD, DELETE');
  assert.equal((await request(srv.url, '/api/login')).status, 405);
  assert.equal((await request(srv.url, '/index.html', { method: 'DELETE' })).status, 405);
  assert.equal((await request(srv.url, '/metrics', { method: 'POST', headers: { ...BEARER, 'Content-Length': '0' } })).status, 405);
});

test('request bodies: over 16 KiB is 413, a POST without a length 411', async () => {
  const big = await request(srv.url, '/api/login', { method: 'POST', ...json({ token: 'x'.repeat(17000) }) });
  assert.equal(big.status, 413);
  const chunked = await request(srv.url, '/api/login', { method: 'POST', headers: { 'Transfer-Encoding': 'chunked', 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(chunked.status, 411);
});

test('one call, and its recording with ranges and HEAD', async () => {
  const r = await request(srv.url, `/api/calls/${calls.A}`, { headers: BEARER });
  assert.equal(r.status, 200);
  const call = r.json().call;
  assert.equal(call.id, calls.A);
  assert.equal(call.end_reason, 'hangup');
  assert.equal(call.turns[0].reply, 'Marmalade line.');
  assert.equal(call.recording.url, `/api/calls/${calls.A}/recording`);
  const file = await finishedRecording(calls.A);
  const size = file.length;
  assert.ok(size > 1000, `recording of ${size} bytes`);

  const url = call.recording.url;
  const whole = await request(srv.url, url, { headers: BEARER });
  assert.equal(whole.status, 200);
  assert.equal(whole.headers['content-type'], 'audio/ogg');
  assert.equal(whole.headers['accept-ranges'], 'bytes');
  assert.deepEqual(whole.buf, file);

  const head = await request(srv.url, url, { method: 'HEAD', headers: BEARER });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers['content-length']), size);
  assert.equal(head.buf.length, 0);

  const first = await request(srv.url, url, { headers: { ...BEARER, Range: 'bytes=0-3' } });
  assert.equal(first.status, 206);
  assert.equal(first.headers['content-range'], `bytes 0-3/${size}`);
  assert.equal(first.text, 'OggS');
  const tail = await request(srv.url, url, { headers: { ...BEARER, Range: 'bytes=-100' } });
  assert.equal(tail.status, 206);
  assert.equal(tail.headers['content-range'], `bytes ${size - 100}-${size - 1}/${size}`);
  assert.deepEqual(tail.buf, whole.buf.subarray(size - 100));
  const mid = await request(srv.url, url, { headers: { ...BEARER, Range: `bytes=1000-${size + 50}` } });
  assert.equal(mid.status, 206);
  assert.deepEqual(mid.buf, whole.buf.subarray(1000));
  const beyond = await request(srv.url, url, { headers: { ...BEARER, Range: `bytes=${size}-` } });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers['content-range'], `bytes */${size}`);
  const several = await request(srv.url, url, { headers: { ...BEARER, Range: 'bytes=0-1,5-6' } });
  assert.equal(several.status, 200);
  assert.equal(several.buf.length, size);
});

test('DELETE removes the call and its recording; then it is 404', async () => {
  const file = join(srv.dataDir, 'recordings', `${calls.C}.ogg`);
  assert.ok(existsSync(file));
  const del = await request(srv.url, `/api/calls/${calls.C}`, { method: 'DELETE', headers: BEARER });
  assert.equal(del.status, 200);
  assert.deepEqual(del.json(), { deleted: calls.C });
  assert.equal((await request(srv.url, `/api/calls/${calls.C}`, { headers: BEARER })).status, 404);
  assert.equal((await request(srv.url, `/api/calls/${calls.C}/recording`, { headers: BEARER })).status, 404);
  assert.equal((await request(srv.url, `/api/calls/${calls.C}`, { method: 'DELETE', headers: BEARER })).status, 404);
  assert.ok(!existsSync(file), 'the recording file is gone');
  assert.ok(!ids(await request(srv.url, '/api/calls', { headers: BEARER })).includes(calls.C));
});

test('metrics_listen serves /metrics to anyone, and nothing else', async () => {
  const m = /metrics on (http:\/\/\S+)metrics/.exec(srv.stderr);
  assert.ok(m, `no metrics address in the log:\n${srv.stderr}`);
  const base = m[1];
  const r = await request(base, '/metrics');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  assert.match(r.text, /^# HELP /m);
  for (const path of ['/api/calls', '/healthz', '/', '/history', '/metrics/x'])
    assert.equal((await request(base, path, { headers: BEARER })).status, 404, path);
  await assert.rejects(new Promise((resolve, reject) => {
    const s = net.connect(new URL(base).port, '127.0.0.1', () => {
      s.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
    });
    let got = '';
    s.on('data', (d) => { got += d; });
    s.on('close', () => (/^HTTP\/1\.1 101/.test(got) ? resolve() : reject(new Error(got || 'closed'))));
    s.on('error', reject);
  }), 'no WebSocket on the metrics listener');
  // On the main listener /metrics keeps the API's rule.
  assert.equal((await request(srv.url, '/metrics')).status, 401);
  assert.equal((await request(srv.url, '/metrics', { headers: BEARER })).status, 200);
});

// Without admin_token only loopback peers get in. A request from another
// address is made by listening on every interface and connecting to this
// machine's own non-loopback address, when it has one.
test('without admin_token: loopback only, proxies and foreign Host names refused', async (t) => {
  const own = Object.values(networkInterfaces()).flat().find((i) => i && i.family === 'IPv4' && !i.internal);
  const open = await startServer({ args: ['--agent', 'echo', '--listen', '0.0.0.0:0', '--call-auth', 'none'] });
  try {
    const port = new URL(open.url).port;
    const local = `http://127.0.0.1:${port}/`;
    assert.equal((await request(local, '/api/calls')).status, 200);
    assert.equal((await request(local, '/metrics')).status, 200);
    assert.equal((await request(local, '/history')).status, 200);
    assert.equal((await request(local, '/api/calls', { headers: { Authorization: 'Bearer anything' } })).status, 200);
    assert.equal((await request(local, '/api/login', { method: 'POST', ...json({ token: 'x' }) })).status, 404);
    for (const headers of [{ 'X-Forwarded-For': '203.0.113.9' }, { 'X-Real-IP': '203.0.113.9' },
      { Forwarded: 'for=203.0.113.9' }, { Host: 'rebound.example' }, { Host: `evil.example:${port}` }]) {
      const r = await request(local, '/api/calls', { headers });
      assert.equal(r.status, 403, JSON.stringify(headers));
    }
    assert.equal((await request(local, '/api/calls', { headers: { Host: `localhost:${port}` } })).status, 200);
    if (!own) {
      t.diagnostic('no non-loopback IPv4 address on this machine: the remote case is not run');
      return;
    }
    const remote = `http://${own.address}:${port}/`;
    const api = await request(remote, '/api/calls');
    assert.equal(api.status, 403);
    assert.match(api.json().error, /loopback/);
    assert.equal((await request(remote, '/metrics')).status, 403);
    const page = await request(remote, '/history');
    assert.equal(page.status, 403);
    assert.match(page.headers['content-type'], /^text\/html/);
    assert.equal((await request(remote, '/api/calls', { headers: { Authorization: 'Bearer anything' } })).status, 403);
    assert.equal((await request(remote, '/healthz')).status, 200);
  } finally {
    await open.stop();
  }
});
