// A cluster on one machine: three `tingshuo serve` nodes on loopback sharing a
// private Redis (tests/lib/redis.mjs) and a private PostgreSQL
// (tests/lib/pg.sh), with the load engines (scripted ASR, fixed reply, tone
// TTS) so that many calls stay cheap. `tingshuo bench` and `tingshuo call`
// are the callers; they follow a node's `redirect` as a page does. Resume is
// driven over the WebSocket directly (the `ws` package), as by a page that
// lost its connection: the C client has no resume of its own.
//
// The tests share one cluster and run in order, each leaving it as the next
// expects: placement by load and the shared history, resume across nodes, a
// Redis outage, a drained node (SIGTERM), a killed node (SIGKILL), and the
// last node drained through POST /api/drain. Without redis-server or
// PostgreSQL's binaries the file is skipped, saying which is missing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, SOURCE_DIR, startServer, tempDir, wsConnect } from '../lib/harness.mjs';
import { redisMissing, startRedis, freePort } from '../lib/redis.mjs';
import { placeCall } from '../lib/call.mjs';

const ADMIN = 'cluster-test-admin-token-0123456789abcdef';
const AUTH = { authorization: `Bearer ${ADMIN}` };
const ENGINES = ['--asr', 'scripted', '--llm', 'fixed', '--tts', 'tone'];
const OFFER = readFileSync(join(SOURCE_DIR, 'tests/fixtures/sdp/chrome_offer.sdp'), 'utf8');
const PG_BIN = process.env.PG_BIN || '/usr/lib/postgresql/15/bin';
const MAX_CALLS = 30; // per node: 60 calls fit in the cluster of three only when spread
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function missing() {
  const r = redisMissing();
  if (r) return r;
  if (!existsSync(join(PG_BIN, 'initdb'))) return `PostgreSQL binaries not found in ${PG_BIN} (apt-get install postgresql)`;
  return null;
}
const why = missing();

let redis, pgDir, pgUrl, work;
const nodes = {};

const pg = (cmd) => execFileSync('bash', [join(SOURCE_DIR, 'tests/lib/pg.sh'), cmd, pgDir],
  { encoding: 'utf8' }).trim().split('\n').pop();

// A node of the cluster, on a port chosen here so that its public URL can be given.
async function startNode(id, extra = []) {
  const port = await freePort();
  const publicUrl = `ws://127.0.0.1:${port}/ws`;
  const srv = await startServer({
    args: ['--listen', `127.0.0.1:${port}`, '--node-id', id, '--public-url', publicUrl,
      '--media-workers', '1', '--inference-threads', '1', '--drain-timeout-s', '60',
      '--max-calls', String(MAX_CALLS),
      '--log-level', 'info', ...ENGINES, ...extra],
    env: { TINGSHUO_CLUSTER_REDIS_URL: redis.url, TINGSHUO_DATABASE_URL: pgUrl, TINGSHUO_ADMIN_TOKEN: ADMIN },
  });
  srv.id = id;
  srv.publicUrl = publicUrl;
  srv.exit = new Promise((resolve) => {
    if (srv.child.exitCode !== null) resolve({ code: srv.child.exitCode, signal: srv.child.signalCode });
    else srv.child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  srv.gone = false;
  return srv;
}

const live = () => Object.values(nodes).filter((n) => !n.gone);

async function getJson(node, path) {
  const r = await fetch(node.url.replace(/\/$/, '') + path, { headers: AUTH, signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.json().catch(() => null) };
}

async function callsActive(node) {
  const r = await fetch(node.url + 'metrics', { headers: AUTH, signal: AbortSignal.timeout(5000) });
  const m = /^tingshuo_calls_active (\d+)$/m.exec(await r.text());
  assert.ok(m, `${node.id}: no tingshuo_calls_active in /metrics`);
  return Number(m[1]);
}

// A WAV of `seconds` of silence for `tingshuo call` to play (16 kHz mono, 16-bit).
function silenceWav(seconds) {
  const path = join(work, `silence-${seconds}.wav`), n = 16000 * seconds * 2;
  const b = Buffer.alloc(44 + n);
  b.write('RIFF', 0); b.writeUInt32LE(36 + n, 4); b.write('WAVEfmt ', 8);
  b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22);
  b.writeUInt32LE(16000, 24); b.writeUInt32LE(32000, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
  b.write('data', 36); b.writeUInt32LE(n, 40);
  writeFileSync(path, b);
  return path;
}

// A gauge or counter of a node's /metrics, without labels (or with `labels` as written there).
async function metric(node, name, labels = '') {
  const r = await fetch(node.url + 'metrics', { headers: AUTH, signal: AbortSignal.timeout(5000) });
  const line = (await r.text()).split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : NaN;
}

async function activeByNode(list = live()) {
  const out = {};
  for (const n of list) out[n.id] = await callsActive(n);
  return out;
}

const sum = (o) => Object.values(o).reduce((a, b) => a + b, 0);

// Polls until pred(await fn()) holds or time is up; returns the last value (the test checks it).
async function waitFor(fn, pred, timeoutMs, stepMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (pred(v) || Date.now() > end) return v;
    await sleep(stepMs);
  }
}

// A node's entry in the registry (docs/cluster.md): a hash, {} when there is none.
function entry(id) {
  const lines = redis.cli('HGETALL', `tingshuo:node:${id}`).split('\n').filter((l) => l !== '');
  const out = {};
  for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i]] = lines[i + 1];
  return out;
}
const registered = (id) => Object.keys(entry(id)).length > 0;

// `tingshuo bench` against one node; resolves {code, out, json}.
function bench(node, calls, durationS) {
  const json = join(work, `bench-${Date.now()}-${Math.random().toString(16).slice(2)}.json`);
  const child = spawn(BIN, ['bench', node.url, '--calls', String(calls), '--duration', String(durationS),
    '--barge-every', '0', '--json', json]);
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  return new Promise((resolve) => child.on('exit', (code) => {
    let doc = null;
    try { doc = JSON.parse(readFileSync(json, 'utf8')); } catch { /* no file: `out` says why */ }
    resolve({ code, out, json: doc });
  }));
}

function assertBenchClean(r, what) {
  assert.ok(r.json, `${what}: no JSON from the bench:\n${r.out}`);
  assert.equal(r.json.failed_calls, 0, `${what}: failed calls ${JSON.stringify(r.json.failures)}\n${r.out}`);
  assert.equal(r.json.connected, r.json.calls, `${what}: not every call connected\n${r.out}`);
  assert.equal(r.code, 0, `${what}: bench exit ${r.code}\n${r.out}`);
}

// Every call record of the shared database, as node `via` lists it: id -> summary.
async function allCalls(via) {
  const out = new Map();
  let cursor = null;
  do {
    const q = `/api/calls?limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const r = await getJson(via, q);
    assert.equal(r.status, 200, `${via.id}: GET ${q}: ${JSON.stringify(r.body)}`);
    for (const c of r.body.calls) out.set(c.id, c);
    cursor = r.body.next_cursor;
  } while (cursor);
  return out;
}

// Offers a call at `url`, following redirects as a client does; returns the answer and where it came from.
async function offerFollowing(url, hops = 3) {
  for (let i = 0; i <= hops; i++) {
    const c = await wsConnect(url);
    await c.expect('hello');
    c.send({ type: 'offer', sdp: OFFER, ...(i ? { redirected: true } : {}) });
    const m = await c.next();
    if (m.type !== 'redirect') {
      assert.equal(m.type, 'answer', JSON.stringify(m));
      return { conn: c, answer: m, url };
    }
    assert.equal(m.reason, 'placement', JSON.stringify(m));
    c.close();
    url = m.url;
  }
  return assert.fail(`more than ${hops} redirects`);
}

if (why) {
  test('a cluster of three nodes on Redis and PostgreSQL', { skip: `skipped: ${why}` }, () => {});
} else {
  before(async () => {
    work = tempDir('tingshuo-cluster-');
    pgDir = join(work, 'pg');
    redis = await startRedis();
    pgUrl = pg('start');
    const started = await Promise.all(['node-a', 'node-b', 'node-c'].map((id) => startNode(id)));
    for (const n of started) nodes[n.id] = n;
  });

  after(async () => {
    for (const n of Object.values(nodes)) {
      if (!n.gone) {
        await n.stop({ expectClean: false }).catch(() => {});
      } else {
        n.child.kill('SIGKILL');
        rmSync(n.dataDir, { recursive: true, force: true });
      }
    }
    if (redis) await redis.remove();
    if (pgDir) { try { pg('stop'); } catch { /* not running */ } }
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('every node registers in Redis', async () => {
    for (const n of live()) {
      const e = await waitFor(() => entry(n.id), (x) => x.id === n.id, 3000);
      assert.equal(e.id, n.id, `${n.id} is not in Redis; keys: ${redis.keys('*').join(' ')}`);
      assert.equal(e.url, n.publicUrl);
      assert.equal(e.max_calls, String(MAX_CALLS));
      assert.equal(e.draining, '0');
      const ttl = Number(redis.cli('PTTL', `tingshuo:node:${n.id}`));
      assert.ok(ttl > 0 && ttl <= 3000, `the entry expires within 3 s (PTTL ${ttl})`);
    }
  });

  test('60 calls offered through one node are spread over all three by load; a full cluster is busy; every node lists every call', async (t) => {
    const a = nodes['node-a'];
    const known = new Set((await allCalls(a)).keys());
    const run = bench(a, 60, 10);
    // Every call in progress at once: the spread, as each node counts its own calls.
    const spread = await waitFor(activeByNode, (s) => sum(s) >= 60, 15000, 200);
    // A full cluster is busy. Each node is filled to MAX_CALLS with offers marked `redirected`,
    // which a node places on itself without asking the cluster; once the registry shows every
    // node full, an offer is answered busy. (Filling through one node instead is not exact:
    // right after a burst of redirects a node may count some twice for a tick, docs/cluster.md,
    // and answer busy a little early.)
    const extra = [];
    let busy = null, filled = null;
    if (sum(spread) === 60) {
      for (const n of live()) {
        for (let i = spread[n.id]; i < MAX_CALLS; i++) {
          const c = await wsConnect(n.wsUrl());
          await c.expect('hello');
          c.send({ type: 'offer', sdp: OFFER, redirected: true });
          const answer = await c.next();
          assert.equal(answer.type, 'answer', `filling ${n.id}: ${JSON.stringify(answer)}`);
          extra.push({ conn: c, answer });
        }
      }
      await waitFor(() => live().map((n) => Number(entry(n.id).calls)), (l) => l.every((x) => x >= MAX_CALLS), 3000);
      // node-a's list may be a tick older than the registry: a redirect is fine, if the node
      // it names is busy.
      for (let url = a.wsUrl(), hop = 0; hop < 2 && !(busy && busy.type === 'error'); hop++) {
        const full = await wsConnect(url);
        await full.expect('hello');
        full.send({ type: 'offer', sdp: OFFER, ...(hop ? { redirected: true } : {}) });
        busy = await full.next();
        full.close();
        if (busy.type === 'redirect') url = busy.url;
      }
      filled = await activeByNode();
    }
    for (const { conn } of extra) {
      conn.send({ type: 'hangup' });
      await conn.expect('end');
      conn.close();
    }
    const r = await run;
    t.diagnostic(`calls in progress on each node: ${JSON.stringify(spread)}; call setup p50 ${r.json && r.json.setup_ms && r.json.setup_ms.p50} ms`);
    assertBenchClean(r, '60 calls through node-a');
    assert.equal(sum(spread), 60, `never 60 calls at once: ${JSON.stringify(spread)}`);
    for (const [id, n] of Object.entries(spread))
      assert.ok(n >= 15, `not spread by load (${id} held ${n}): ${JSON.stringify(spread)}`);
    assert.deepEqual(filled, { 'node-a': MAX_CALLS, 'node-b': MAX_CALLS, 'node-c': MAX_CALLS },
      'the extra calls filled the cluster');
    assert.equal(busy && busy.type, 'error', `an offer to a full cluster: ${JSON.stringify(busy)}`);
    assert.equal(busy.code, 'busy', JSON.stringify(busy));
    for (const { answer } of extra) known.add(answer.call_id);

    // The records, through the shared database: every call, each with the node that held it.
    const c = nodes['node-c'];
    const fresh = await waitFor(async () => [...(await allCalls(c)).values()].filter((x) => !known.has(x.id)),
      (l) => l.length >= 60 && l.every((x) => x.ended_at), 15000, 300);
    assert.equal(fresh.length, 60, 'node-c lists every call of the cluster');
    const byNode = {};
    for (const x of fresh) {
      const full = await getJson(c, `/api/calls/${x.id}`);
      assert.equal(full.status, 200);
      byNode[full.body.call.node] = (byNode[full.body.call.node] || 0) + 1;
      assert.equal(full.body.call.end_reason, 'hangup', JSON.stringify(full.body.call));
    }
    assert.deepEqual(byNode, spread, "each record's node is the node that held the call");
    for (const n of [nodes['node-a'], nodes['node-b']]) {
      const ids = new Set((await allCalls(n)).keys());
      for (const x of fresh) assert.ok(ids.has(x.id), `${n.id} does not list ${x.id}`);
    }
  });

  test('resume of a call held by another node is redirected there', async () => {
    await waitFor(activeByNode, (s) => sum(s) === 0, 10000);
    const { conn, answer, url } = await offerFollowing(nodes['node-b'].wsUrl());
    const holder = live().find((n) => n.publicUrl === url);
    assert.ok(holder, `the call is on ${url}, not a node of the cluster`);
    conn.close(); // the WebSocket drops; the call waits resume_timeout_ms for a resume
    const other = live().find((n) => n !== holder);
    const c = await wsConnect(other.wsUrl());
    await c.expect('hello');
    c.send({ type: 'resume', call_id: answer.call_id, resume_secret: answer.resume_secret });
    const m = await c.next();
    c.close();
    assert.equal(m.type, 'redirect', `resume on ${other.id}: ${JSON.stringify(m)}`);
    assert.equal(m.reason, 'resume');
    assert.equal(m.url, holder.publicUrl);
    const h = await wsConnect(m.url);
    await h.expect('hello');
    h.send({ type: 'resume', call_id: answer.call_id, resume_secret: answer.resume_secret });
    assert.equal((await h.expect('resumed')).call_id, answer.call_id);
    h.send({ type: 'hangup' });
    assert.equal((await h.expect('end')).reason, 'hangup');
    h.close();

    // A wrong secret: refused, or sent on to the holder, which refuses it; the call is not taken.
    const { answer: second, conn: sc, url: secondUrl } = await offerFollowing(holder.wsUrl());
    sc.close();
    const secondHolder = live().find((n) => n.publicUrl === secondUrl);
    const resumeAt = async (url, secret) => {
      const w = await wsConnect(url);
      await w.expect('hello');
      w.send({ type: 'resume', call_id: second.call_id, resume_secret: secret });
      return { w, m: await w.next() };
    };
    const away = await resumeAt(live().find((n) => n !== secondHolder).wsUrl(), '0'.repeat(32));
    away.w.close();
    const wrong = away.m;
    assert.ok((wrong.type === 'error' && wrong.code === 'unauthorized') ||
      (wrong.type === 'redirect' && wrong.url === secondUrl), `wrong secret: ${JSON.stringify(wrong)}`);
    if (wrong.type === 'redirect') {
      const there = await resumeAt(wrong.url, '0'.repeat(32));
      there.w.close();
      assert.equal(there.m.code, 'unauthorized', `the holder, given a wrong secret: ${JSON.stringify(there.m)}`);
    }
    const right = await resumeAt(secondUrl, second.resume_secret);
    assert.equal(right.m.type, 'resumed', JSON.stringify(right.m));
    right.w.send({ type: 'hangup' });
    await right.w.expect('end');
    right.w.close();
    // An id no node holds.
    const e = await wsConnect(other.wsUrl());
    await e.expect('hello');
    e.send({ type: 'resume', call_id: 'ffffffffffffffff', resume_secret: answer.resume_secret });
    const unknown = await e.next();
    e.close();
    assert.equal(unknown.code, 'unknown_call', JSON.stringify(unknown));
  });

  test('Redis stopped and started during calls ends none of them; meanwhile new calls are placed locally', async () => {
    await waitFor(activeByNode, (s) => sum(s) === 0, 10000);
    const a = nodes['node-a'];
    const first = bench(a, 12, 12);
    const spread = await waitFor(activeByNode, (s) => sum(s) >= 12, 10000, 200);
    assert.equal(sum(spread), 12, JSON.stringify(spread));
    await redis.stop({ hard: true });
    await sleep(1500); // every node has missed a refresh
    const during = bench(a, 6, 4);
    const local = await waitFor(activeByNode, (s) => sum(s) >= 18, 8000, 200);
    assert.deepEqual(local, { ...spread, 'node-a': spread['node-a'] + 6 },
      `calls while Redis is down stay on node-a: ${JSON.stringify(spread)} -> ${JSON.stringify(local)}`);
    assertBenchClean(await during, 'calls during the outage');
    await redis.start();
    for (const n of live())
      assert.ok(await waitFor(() => registered(n.id), (x) => x, 5000), `${n.id} did not register again once Redis was back`);
    assertBenchClean(await first, 'calls across the outage');
  });

  test('a drained node (SIGTERM) finishes its calls, takes no new ones, and exits 0', async () => {
    await waitFor(activeByNode, (s) => sum(s) === 0, 10000);
    const a = nodes['node-a'], b = nodes['node-b'];
    const first = bench(a, 9, 10);
    const spread = await waitFor(activeByNode, (s) => sum(s) >= 9, 10000, 200);
    assert.ok(spread['node-b'] > 0, `node-b holds no call to drain: ${JSON.stringify(spread)}`);
    b.child.kill('SIGTERM');
    const health = await waitFor(() => fetch(b.url + 'healthz').then((r) => r.status).catch(() => 0), (s) => s === 503, 3000);
    assert.equal(health, 503, '/healthz says not ready while draining');
    assert.equal((await waitFor(() => entry(b.id), (e) => e.draining === '1', 2000)).draining, '1',
      'the registry says node-b drains');
    const held = await callsActive(b);
    let most = held;
    const sampler = setInterval(() => callsActive(b).then((n) => { most = Math.max(most, n); }).catch(() => {}), 200);
    // `tingshuo call` knocking at the draining node itself (as through a load balancer) is sent on.
    const knock = placeCall(b.url, silenceWav(2), { timeoutS: 20 });
    const during = await bench(a, 6, 3);
    const knocked = await knock.done;
    clearInterval(sampler);
    assertBenchClean(during, 'calls while node-b drains');
    assert.ok(most <= held, `node-b took new calls while draining (${held} -> ${most})`);
    assert.equal(knocked, 0, `a call offered to the draining node-b:\n${knock.dump()}`);
    const rec = await waitFor(() => getJson(a, `/api/calls/${knock.id}`), (x) => x.status === 200, 5000);
    assert.notEqual(rec.body.call.node, 'node-b', 'the call offered to node-b ran elsewhere');
    assertBenchClean(await first, 'calls on the draining node');
    const { code, signal } = await Promise.race([b.exit, sleep(20000).then(() => ({ code: 'still running' }))]);
    assert.equal(code, 0, `node-b exit ${code} (${signal}):\n${b.stderr.slice(-3000)}`);
    b.gone = true;
    assert.equal(registered(b.id), false, 'node-b left the registry as it exited');
  });

  test('a node killed with SIGKILL drops out of placement within 3 s; new calls go to the others', async (t) => {
    const a = nodes['node-a'], c = nodes['node-c'];
    assert.ok(registered(c.id), 'node-c is registered');
    c.child.kill('SIGKILL');
    const t0 = Date.now();
    await c.exit;
    c.gone = true;
    // node-a's own list of live nodes, the one it places calls from.
    const seen = await waitFor(() => metric(a, 'tingshuo_cluster_nodes'), (n) => n === 1, 6000, 50);
    const ms = Date.now() - t0;
    t.diagnostic(`node-a dropped node-c from its list ${ms} ms after SIGKILL`);
    assert.equal(seen, 1, 'node-a still counts node-c among the live nodes');
    // Nodes stop placing on an entry with less than 1 s to live, so node-a may drop node-c
    // before Redis lets its entry expire; that happens 3 s after its last refresh at most.
    const left = await waitFor(() => registered(c.id), (r) => r === false, Math.max(0, 3200 - (Date.now() - t0)), 50);
    assert.equal(left, false, `node-c is still registered ${Date.now() - t0} ms after SIGKILL`);
    assertBenchClean(await bench(a, 6, 3), 'calls after node-c died');
    // The entry expires on Redis's clock and node-a reads the list every second; 3 s is the
    // promise, plus a poll's slack.
    assert.ok(ms <= 3200, `node-a placed calls on the dead node-c for ${ms} ms after it died`);
  });

  test('POST /api/drain on the last node: /healthz 503, offers answered busy, its calls finish, exit 0', async () => {
    const a = nodes['node-a'];
    const calls = bench(a, 2, 5);
    await waitFor(activeByNode, (s) => sum(s) >= 2, 10000, 200);
    const r = await fetch(a.url + 'api/drain', { method: 'POST', headers: AUTH });
    assert.ok(r.status >= 200 && r.status < 300, `POST /api/drain: ${r.status} ${await r.text()}`);
    assert.equal((await fetch(a.url + 'healthz')).status, 503);
    const ws = await wsConnect(a.wsUrl());
    await ws.expect('hello');
    ws.send({ type: 'offer', sdp: OFFER });
    const m = await ws.next();
    ws.close();
    assert.equal(m.type, 'error', `an offer to the draining last node: ${JSON.stringify(m)}`);
    assert.equal(m.code, 'busy', JSON.stringify(m));
    assertBenchClean(await calls, 'calls on the drained node');
    const { code, signal } = await Promise.race([a.exit, sleep(15000).then(() => ({ code: 'still running' }))]);
    assert.equal(code, 0, `node-a exit ${code} (${signal}):\n${a.stderr.slice(-3000)}`);
    a.gone = true;
  });
}
