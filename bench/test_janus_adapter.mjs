// Checks the Janus side of the benchmark with a real browser, without the
// load client: Janus (bench/janus_start.sh) and bench/janus_adapter.mjs are
// started on free ports, headless Chromium opens tingshuo's own page served
// by the adapter and places a call, and the call must connect and carry the
// room's played speech back (inbound RTP bytes grow, and the recorded audio
// follows the prompt's energy envelope). Two more calls are placed from a
// bare RTCPeerConnection the way the load client does it: all candidates in
// the offer and no trickling, and with no candidates at all (Janus then has
// to learn the caller's address from its checks). The WebSocket server's
// framing limits are checked with the `ws` client. Last, JANUS_TEST_CALLS
// (default 10) calls run at once from one page while Janus's CPU time and
// resident memory are read from /proc: a first figure for its cost per call.
//
// Not part of CTest (it needs Debian's janus package and root): run it by hand,
//   node --test bench/test_janus_adapter.mjs
// from the source tree, after `npm ci`. It runs itself inside bench/netns.sh,
// so Janus's candidates are 127.0.0.2. Numbers are printed for the record.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
if (process.env.BENCH_NETNS !== '1') {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // run the tests in the child, not as a subtest of this process
  const r = spawnSync(join(ROOT, 'bench', 'netns.sh'), [process.execPath, fileURLToPath(import.meta.url)],
    { stdio: 'inherit', env });
  process.exit(r.status ?? 1);
}
// The shared test harness insists on these; only its browser and audio helpers are used here.
process.env.TS_BIN ??= join(ROOT, 'build', 'tingshuo');
process.env.TS_SOURCE_DIR ??= ROOT;
const { launchBrowser, openPage, speechWav, readWav, envelope, bestCorrelation, startRemoteRecorder,
  stopRemoteRecorder } = await import('../tests/lib/harness.mjs');

const freePort = () => new Promise((res, rej) => {
  const s = createServer();
  s.once('error', rej);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
});

// Starts a child, resolves once `ready` matches its stdout (or rejects on exit/timeout).
function startChild(cmd, args, ready, timeoutMs = 15000) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stderr.on('data', (d) => { err += d; if (process.env.VERBOSE) process.stderr.write(d); });
  const exited = new Promise((r) => child.on('exit', (code, sig) => r({ code, sig })));
  const up = new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`${cmd} did not start:\n${out}\n${err}`)), timeoutMs);
    child.stdout.on('data', (d) => {
      out += d;
      if (process.env.VERBOSE) process.stderr.write(d);
      const m = ready.exec(out);
      if (m) { clearTimeout(t); res(m); }
    });
    exited.then(({ code }) => { clearTimeout(t); rej(new Error(`${cmd} exited with ${code}:\n${out}\n${err}`)); });
  });
  return { child, up, exited, get stderr() { return err; } };
}

async function stopChild(c) {
  if (!c || c.child.exitCode !== null) return;
  c.child.kill('SIGTERM');
  const t = setTimeout(() => c.child.kill('SIGKILL'), 5000);
  await c.exited;
  clearTimeout(t);
}

let dir, janus, adapter, url, browser;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'janus-bench-'));
  const janusPort = await freePort();
  janus = startChild(join(ROOT, 'bench', 'janus_start.sh'), [join(dir, 'janus'), String(janusPort)],
    /WebRTC Server|Starting Meetecho Janus/);
  await janus.up;
  // Janus is up once its HTTP transport answers.
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${janusPort}/janus/info`);
      if (r.ok) break;
    } catch { /* not yet */ }
    if (i > 100) throw new Error(`Janus HTTP did not come up:\n${janus.stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  adapter = startChild('node', [join(ROOT, 'bench', 'janus_adapter.mjs'), '--listen', '127.0.0.1:0',
    '--janus', `http://127.0.0.1:${janusPort}/janus`, '--play', join(dir, 'janus', 'prompt.opus'),
    '--web', join(ROOT, 'web'), '--verbose'], /listening on (http:\/\/\S+)/);
  url = (await adapter.up)[1];
  const wav = speechWav(dir, 'mic', 'Hello, can you hear me? I am calling the audio bridge.', { before: 0.5, after: 2 });
  browser = await launchBrowser({ wav });
});

after(async () => {
  await browser?.close();
  await stopChild(adapter);
  await stopChild(janus);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function inboundStats(page, pcExpr) {
  return page.evaluate(async (expr) => {
    // eslint-disable-next-line no-eval
    const pc = (0, eval)(expr);
    const out = {};
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') Object.assign(out, {
        bytes: s.bytesReceived, packets: s.packetsReceived, lost: s.packetsLost, jitter: s.jitter,
        concealed: s.concealedSamples, samples: s.totalSamplesReceived });
      if (s.type === 'outbound-rtp' && s.kind === 'audio') out.sentPackets = s.packetsSent;
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') out.rtt = s.currentRoundTripTime;
    });
    return out;
  }, pcExpr);
}

const healthCalls = async () => (await (await fetch(url + 'healthz')).json()).calls;

test('the tingshuo page calls through the adapter and hears the room play its prompt', async () => {
  const { page, context, assertNoErrors } = await openPage(browser, url);
  try {
    await page.waitForSelector('#status[data-state="ready"]');
    const t0 = Date.now();
    await page.click('#call');
    await page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
    const setupMs = Date.now() - t0;
    assert.match(await page.textContent('#callinfo'), /Call janus-\d+/);
    assert.equal(await healthCalls(), 1);
    await startRemoteRecorder(page);
    const s1 = await inboundStats(page, 'state.pc');
    await page.waitForTimeout(14000); // longer than one loop of the 12 s prompt
    const s2 = await inboundStats(page, 'state.pc');
    const got = await stopRemoteRecorder(page);
    const bytesPerSec = (s2.bytes - s1.bytes) / 14;
    const pktPerSec = (s2.packets - s1.packets) / 14;
    console.log(`page call: setup ${setupMs} ms, ${pktPerSec.toFixed(1)} packets/s, ${(bytesPerSec * 8 / 1000).toFixed(1)} kbit/s`
      + ` received, lost ${s2.lost}, jitter ${(s2.jitter * 1000).toFixed(1)} ms, rtt ${((s2.rtt ?? 0) * 1000).toFixed(1)} ms,`
      + ` sent ${s2.sentPackets} packets`);
    assert.ok(pktPerSec > 45 && pktPerSec < 55, `about 50 packets/s from Janus (got ${pktPerSec})`);
    assert.ok(bytesPerSec > 1000, `Janus sends real audio (${bytesPerSec} B/s)`);
    assert.equal(s2.lost, 0);

    // The room plays the prompt in a loop: 10 s of what was heard must match
    // some stretch of the looped prompt's energy envelope.
    const prompt = readWav(join(dir, 'janus', 'prompt.wav'));
    const peak = got.samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(peak > 0.05, `the prompt is audible (peak ${peak.toFixed(3)})`);
    const loop = envelope(prompt.samples, prompt.rate);
    const heard = envelope(got.samples, got.rate).slice(50, 550);
    assert.ok(heard.length >= 450, `recorded ${heard.length} frames`);
    const { corr } = bestCorrelation([...loop, ...loop], heard);
    console.log(`page call: received audio peak ${peak.toFixed(3)}, envelope correlation with the prompt ${corr.toFixed(3)}`);
    assert.ok(corr > 0.7, `what the page hears is the prompt (correlation ${corr.toFixed(3)})`);

    await page.click('#hangup');
    await page.waitForSelector('#status[data-state="ready"]');
    for (let i = 0; i < 50 && (await healthCalls()) !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await healthCalls(), 0);
    assertNoErrors();
  } finally {
    await context.close();
  }
});

// A call placed like the load client: one offer, no trickling; `candidates`
// says whether the offer keeps its a=candidate lines.
async function clientStyleCall(candidates) {
  const { page, context } = await openPage(browser, url);
  const wsUrl = url.replace(/^http/, 'ws') + 'ws';
  const result = await page.evaluate(async ({ wsUrl, candidates }) => {
    const ws = new WebSocket(wsUrl);
    const inbox = [];
    let wake = null;
    ws.onmessage = (e) => { inbox.push(JSON.parse(e.data)); if (wake) wake(); };
    const next = async (type, ms = 10000) => {
      const end = Date.now() + ms;
      for (;;) {
        const i = inbox.findIndex((m) => m.type === type || m.type === 'error');
        if (i >= 0) { const m = inbox.splice(i, 1)[0]; if (m.type === 'error') throw new Error(m.message); return m; }
        if (Date.now() > end) throw new Error(`no ${type}`);
        await new Promise((r) => { wake = r; setTimeout(r, 100); });
      }
    };
    await next('hello');
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    window.__pc = pc;
    stream.getTracks().forEach((t) => pc.addTrack(t, stream));
    await pc.setLocalDescription(await pc.createOffer());
    if (pc.iceGatheringState !== 'complete')
      await new Promise((r) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));
    let sdp = pc.localDescription.sdp;
    if (!candidates) sdp = sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') && l !== 'a=end-of-candidates').join('\r\n');
    const t0 = performance.now();
    ws.send(JSON.stringify({ type: 'offer', sdp, config: { language: 'en' } }));
    const answer = await next('answer');
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    await next('connected', 15000);
    const setupMs = performance.now() - t0;
    window.__ws = ws;
    window.__next = next;
    return { setupMs, answerSdp: answer.sdp, callId: answer.call_id };
  }, { wsUrl, candidates });
  const s1 = await inboundStats(page, 'window.__pc');
  await page.waitForTimeout(5000);
  const s2 = await inboundStats(page, 'window.__pc');
  const ended = await page.evaluate(async () => {
    window.__ws.send(JSON.stringify({ type: 'hangup' }));
    return window.__next('end');
  });
  await context.close();
  return { ...result, pps: (s2.packets - s1.packets) / 5, lost: s2.lost, ended };
}

test('an offer carrying all its candidates, no trickle: the answer carries only 127.0.0.2 host candidates', async () => {
  const r = await clientStyleCall(true);
  const cands = r.answerSdp.split('\r\n').filter((l) => l.startsWith('a=candidate:'));
  console.log(`client-style call: setup ${r.setupMs.toFixed(0)} ms, ${r.pps} packets/s; answer candidates:\n  ${cands.join('\n  ')}`);
  assert.ok(cands.length > 0, 'Janus put its candidates into the answer');
  for (const c of cands) assert.match(c, / 127\.0\.0\.2 \d+ typ host/);
  assert.ok(r.pps > 45, `media flows (${r.pps} packets/s)`);
  assert.deepEqual({ type: r.ended.type, reason: r.ended.reason, call_id: r.ended.call_id },
    { type: 'end', reason: 'hangup', call_id: r.callId });
  for (let i = 0; i < 50 && (await healthCalls()) !== 0; i++) await new Promise((res) => setTimeout(res, 100));
  assert.equal(await healthCalls(), 0);
});

test('an offer with no candidates at all still connects (Janus learns the caller from its checks)', async () => {
  const r = await clientStyleCall(false);
  console.log(`candidate-less call: setup ${r.setupMs.toFixed(0)} ms, ${r.pps} packets/s`);
  assert.ok(r.pps > 45, `media flows (${r.pps} packets/s)`);
});

test('the WebSocket server: ping, bad JSON, unknown type, binary and oversized frames', async () => {
  const { WebSocket } = await import('ws');
  const wsUrl = url.replace(/^http/, 'ws') + 'ws';
  const open = async () => {
    const ws = new WebSocket(wsUrl);
    const msgs = [];
    ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
    await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
    const wait = async (pred) => {
      for (let i = 0; i < 100; i++) { const m = msgs.find(pred); if (m) return m; await new Promise((r) => setTimeout(r, 20)); }
      throw new Error('message did not come');
    };
    const closed = new Promise((res) => ws.once('close', (code) => res(code)));
    return { ws, wait, closed };
  };
  const a = await open();
  assert.equal((await a.wait((m) => m.type === 'hello')).type, 'hello');
  a.ws.send(JSON.stringify({ type: 'ping', id: 7 }));
  assert.deepEqual(await a.wait((m) => m.type === 'pong'), { type: 'pong', id: 7 });
  a.ws.send('{nope');
  assert.equal((await a.wait((m) => m.type === 'error')).code, 'bad_json');
  a.ws.send(JSON.stringify({ type: 'dance' }));
  assert.equal((await a.wait((m) => m.code === 'unknown_type')).type, 'error');
  a.ws.send(JSON.stringify({ type: 'offer' }));
  assert.equal((await a.wait((m) => m.code === 'bad_message')).type, 'error');
  const pong = new Promise((res) => a.ws.once('pong', (d) => res(d.toString())));
  a.ws.ping('abc');
  assert.equal(await pong, 'abc');
  // a fragmented text message
  a.ws.send('{"type":"ping",', { fin: false });
  a.ws.send('"id":"frag"}', { fin: true });
  assert.deepEqual(await a.wait((m) => m.id === 'frag'), { type: 'pong', id: 'frag' });
  a.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  assert.equal(await a.closed, 1003);

  const b = await open();
  b.ws.send('x'.repeat(256 * 1024 + 1));
  assert.equal(await b.closed, 1009);

  const c = await open();
  c.ws.close(1000);
  assert.equal(await c.closed, 1000);
});

// CPU seconds (user + system) and resident kB of a process, from /proc.
function procUsage(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  return { cpu: ticks / 100, rssKb: rss };
}

test('several calls at once: what Janus spends per call', async () => {
  const n = Number(process.env.JANUS_TEST_CALLS || 10);
  const { page, context } = await openPage(browser, url);
  try {
    const wsUrl = url.replace(/^http/, 'ws') + 'ws';
    const janusPid = janus.child.pid; // janus_start.sh execs Janus: same pid
    const idle = procUsage(janusPid);
    const connected = await page.evaluate(async ({ wsUrl, n }) => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const one = async () => {
        const ws = new WebSocket(wsUrl);
        const got = [];
        let wake = () => {};
        ws.onmessage = (e) => { got.push(JSON.parse(e.data)); wake(); };
        const next = async (type) => {
          const end = Date.now() + 20000;
          while (Date.now() < end) {
            const m = got.find((x) => x.type === type || x.type === 'error');
            if (m) { if (m.type === 'error') throw new Error(m.message); return m; }
            await new Promise((r) => { wake = r; setTimeout(r, 200); });
          }
          throw new Error(`no ${type}`);
        };
        await next('hello');
        const pc = new RTCPeerConnection();
        stream.getTracks().forEach((t) => pc.addTrack(t, stream));
        await pc.setLocalDescription(await pc.createOffer());
        await new Promise((r) => (pc.iceGatheringState === 'complete' ? r()
          : pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r())));
        ws.send(JSON.stringify({ type: 'offer', sdp: pc.localDescription.sdp }));
        await pc.setRemoteDescription({ type: 'answer', sdp: (await next('answer')).sdp });
        await next('connected');
        return pc;
      };
      window.__pcs = [];
      for (let i = 0; i < n; i++) window.__pcs.push(await one());
      return window.__pcs.length;
    }, { wsUrl, n });
    assert.equal(connected, n);
    await page.waitForTimeout(2000);
    const t0 = Date.now(), u0 = procUsage(janusPid);
    await page.waitForTimeout(10000);
    const t1 = Date.now(), u1 = procUsage(janusPid);
    const packets = await page.evaluate(async () => {
      let total = 0;
      for (const pc of window.__pcs) (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') total += s.packetsReceived;
      });
      return total;
    });
    const cpuShare = (u1.cpu - u0.cpu) / ((t1 - t0) / 1000); // cores
    console.log(`${n} calls at once: Janus uses ${(cpuShare * 100).toFixed(1)}% of a core`
      + ` (${(cpuShare * 100 / n).toFixed(2)}% per call); RSS ${(idle.rssKb / 1024).toFixed(1)} MB idle,`
      + ` ${(u1.rssKb / 1024).toFixed(1)} MB with the calls (${((u1.rssKb - idle.rssKb) / 1024 / n).toFixed(2)} MB per call);`
      + ` ${packets} packets received in all`);
    assert.ok(packets > n * 50 * 10, `every call receives audio (${packets} packets)`);
  } finally {
    await context.close();
  }
});
