// Test harness shared by the integration and browser tests.
//
// startServer() runs the built binary on free ports (port 0, read back from
// the line it prints), in its own temporary data directory, and stop()
// checks that it exits cleanly: status 0, which under the sanitizer build
// also means LeakSanitizer found no leak.
//
// launchBrowser() starts Debian's chromium headless through playwright-core,
// with the flags that keep it off the network, a fake microphone that plays
// a WAV file, and permission to use it. openPage() records every console
// error and uncaught exception so a test can fail on them.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

export const BIN = process.env.TS_BIN;
export const SOURCE_DIR = process.env.TS_SOURCE_DIR;
if (!BIN || !SOURCE_DIR) throw new Error('run through ctest: TS_BIN and TS_SOURCE_DIR must be set');

export const fixture = (...p) => join(SOURCE_DIR, 'tests', 'fixtures', ...p);

export function tempDir(prefix = 'tingshuo-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

// Runs the binary to completion; resolves {code, stdout, stderr}.
export function run(args, { env = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, args, { env: { ...cleanEnv(), ...env } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${args.join(' ')} timed out`)); }, timeoutMs);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

// The server must not see our own TINGSHUO_* variables unless a test sets them.
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TINGSHUO_')) env[k] = v;
  return env;
}

const liveServers = new Set();

// dataDir: reuse a data directory (a restart); it is then kept when the server stops.
export async function startServer({ args = [], env = {}, startTimeoutMs = 15000, dataDir: reuse } = {}) {
  const dataDir = reuse || tempDir();
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, ...args],
    { env: { ...cleanEnv(), ...env } });
  let stdout = '', stderr = '';
  child.stderr.on('data', (d) => { stderr += d; if (process.env.TS_VERBOSE) process.stderr.write(d); });
  liveServers.add(child);
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    liveServers.delete(child);
    resolve({ code, signal });
  }));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${stderr}`)), startTimeoutMs);
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = /open (http:\/\/\S+) in a browser(?:; from other machines use (https:\/\/\S+))?/.exec(stdout);
      if (m) { clearTimeout(timer); resolve({ http: m[1], https: m[2] }); }
    });
    exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`server exited with ${code}:\n${stderr}`)); });
  });
  return {
    url: url.http,
    httpsUrl: url.https,
    dataDir,
    child,
    get stderr() { return stderr; },
    // Resolves once the server has used less than 30 ms of CPU in 300 ms (at most 15 s):
    // what it does once at start (the TTS cache's warm-up) is over.
    async idle() {
      const cpu = () => {
        const f = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
        return (Number(f[11]) + Number(f[12])) / 100;
      };
      for (let i = 0; i < 50; i++) {
        const c = cpu();
        await new Promise((r) => setTimeout(r, 300));
        if (cpu() - c < 0.03) return;
      }
    },
    wsUrl(path = '/ws') { return url.http.replace(/^http/, 'ws').replace(/\/$/, '') + path; },
    // Stops with SIGINT, the immediate shutdown (SIGTERM would drain: wait for the calls in
    // progress to end); asserts a clean, leak-free exit; returns how long it took.
    async stop({ expectClean = true, signal: how = 'SIGINT' } = {}) {
      const t0 = Date.now();
      child.kill(how);
      const kill = setTimeout(() => child.kill('SIGKILL'), 10000);
      const { code, signal } = await exited;
      clearTimeout(kill);
      const ms = Date.now() - t0;
      if (!reuse) rmSync(dataDir, { recursive: true, force: true });
      if (expectClean) assert.equal(code, 0, `server exit status ${code} (${signal}); stderr:\n${stderr}`);
      return { code, ms, stderr };
    },
  };
}

export const CHROMIUM_FLAGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions', '--mute-audio',
  '--autoplay-policy=no-user-gesture-required',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
];

// wav: a WAV file Chromium's fake microphone plays (looping). Without it the
// fake device produces a beep.
// When the browser cannot start (playwright-core or chromium missing), the
// servers this test started are killed, so the test fails at once instead of
// waiting on a live child process until CTest's timeout.
export async function launchBrowser({ wav, extraArgs = [] } = {}) {
  try {
    const { chromium } = await import('playwright-core');
    const args = [...CHROMIUM_FLAGS, ...extraArgs];
    if (wav) args.push(`--use-file-for-fake-audio-capture=${wav}`);
    return await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args, headless: true });
  } catch (err) {
    for (const child of liveServers) child.kill('SIGKILL');
    throw err;
  }
}

// contextOptions: more playwright context options (e.g. locale). recordWs:
// keep the page's WebSocket traffic for wsLog().
export async function openPage(browser, url, { permissions = ['microphone'], contextOptions = {},
  recordWs = false } = {}) {
  const origin = new URL(url).origin;
  const context = await browser.newContext({ ignoreHTTPSErrors: true, ...contextOptions });
  if (permissions.length) await context.grantPermissions(permissions, { origin });
  if (recordWs) await context.addInitScript(recordWebSocketInPage);
  const page = await context.newPage();
  const errors = [];
  page.on('console', (msg) => { if (msg.type() === 'error') errors.push(`console: ${msg.text()}`); });
  page.on('pageerror', (err) => errors.push(`exception: ${err.message}`));
  await page.goto(url);
  return {
    page,
    context,
    errors,
    assertNoErrors() { assert.deepEqual(errors, [], `the page reported errors:\n${errors.join('\n')}`); },
  };
}

// The page's call button state: a call is up (the answer came and media
// flows), or the page is back to ready after a hang-up.
export async function waitInCall(page, timeout = 15000) {
  await page.waitForSelector('#status[data-state="incall"]', { timeout });
}

export async function hangUp(page) {
  await page.click('#hangup');
  await page.waitForSelector('#status[data-state="ready"]');
}

// A WebSocket client that queues incoming JSON messages for next().
export async function wsConnect(url) {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(url);
  const queue = [], waiters = [];
  ws.on('message', (data) => {
    const msg = JSON.parse(data.toString());
    const w = waiters.shift();
    if (w) w(msg); else queue.push(msg);
  });
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return {
    ws,
    send(obj) { ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)); },
    next(timeoutMs = 5000) {
      if (queue.length) return Promise.resolve(queue.shift());
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no message within ' + timeoutMs + ' ms')), timeoutMs);
        waiters.push((m) => { clearTimeout(t); resolve(m); });
      });
    },
    // Skips messages until one of `type` arrives.
    async expect(type, timeoutMs = 5000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const m = await this.next(Math.max(1, end - Date.now()));
        if (m.type === type) return m;
      }
    },
    close() { ws.close(); },
  };
}

// Speech for the fake microphone: flite says `text`, sox makes it 48 kHz
// mono 16-bit (what Chromium's fake device plays) with silence around it.
// The record of call `id` from the history API once it is stored as ended (the store writes
// it a moment after the call ends); fails the test after `timeoutMs`.
export async function endedCall(srv, id, timeoutMs = 15000) {
  const t0 = Date.now();
  for (;;) {
    const r = await fetch(new URL(`/api/calls/${id}`, srv.url));
    if (r.status === 200) {
      const { call } = await r.json();
      if (call.ended_at) return call;
    }
    if (Date.now() - t0 > timeoutMs) assert.fail(`call ${id} not stored as ended`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

export function speechWav(dir, name, text, { before = 0.5, after = 2.5 } = {}) {
  const raw = join(dir, `${name}.raw.wav`), wav = join(dir, `${name}.wav`);
  execFileSync('flite', ['-voice', 'slt', '-t', text, '-o', raw]);
  execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', wav, 'pad', String(before), String(after)]);
  return wav;
}

// Reads a 16-bit PCM WAV into {rate, samples: Float32Array}.
export function readWav(path) {
  const b = readFileSync(path);
  let off = 12, rate = 0, bits = 16, channels = 1;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4), size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') { channels = b.readUInt16LE(off + 10); rate = b.readUInt32LE(off + 12); bits = b.readUInt16LE(off + 22); }
    if (id === 'data') {
      if (bits !== 16) throw new Error('16-bit WAV expected');
      const n = Math.floor(size / 2 / channels), samples = new Float32Array(n);
      for (let i = 0; i < n; i++) samples[i] = b.readInt16LE(off + 8 + i * 2 * channels) / 32768;
      return { rate, samples };
    }
    off += 8 + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

// Energy envelope: dB per `frameMs` frame.
export function envelope(samples, rate, frameMs = 20) {
  const n = Math.round(rate * frameMs / 1000), out = [];
  for (let i = 0; i + n <= samples.length; i += n) {
    let s = 0;
    for (let k = i; k < i + n; k++) s += samples[k] * samples[k];
    out.push(10 * Math.log10(s / n + 1e-10));
  }
  return out;
}

// Best normalized correlation of `b` against `a` over every lag.
export function bestCorrelation(a, b) {
  let best = -1, bestLag = 0;
  for (let lag = -b.length + 10; lag < a.length - 10; lag++) {
    let sab = 0, saa = 0, sbb = 0, ma = 0, mb = 0, n = 0;
    for (let i = 0; i < b.length; i++) { const j = i + lag; if (j < 0 || j >= a.length) continue; ma += a[j]; mb += b[i]; n++; }
    if (n < b.length / 2) continue;
    ma /= n; mb /= n;
    for (let i = 0; i < b.length; i++) {
      const j = i + lag;
      if (j < 0 || j >= a.length) continue;
      sab += (a[j] - ma) * (b[i] - mb); saa += (a[j] - ma) ** 2; sbb += (b[i] - mb) ** 2;
    }
    const c = sab / Math.sqrt(saa * sbb + 1e-12);
    if (c > best) { best = c; bestLag = lag; }
  }
  return { corr: best, lag: bestLag };
}

// In the page: records what the remote audio element plays, as Float32 samples.
export async function startRemoteRecorder(page) {
  await page.evaluate(() => {
    const el = document.getElementById('remote');
    const rec = { chunks: [], rate: 0 };
    window.__remoteRecorder = rec;
    const attach = () => {
      const stream = el.srcObject;
      if (!stream) return setTimeout(attach, 50);
      const ctx = new AudioContext();
      rec.rate = ctx.sampleRate;
      const src = ctx.createMediaStreamSource(stream);
      const proc = ctx.createScriptProcessor(4096, 1, 1);
      proc.onaudioprocess = (e) => rec.chunks.push(Array.from(e.inputBuffer.getChannelData(0)));
      src.connect(proc);
      proc.connect(ctx.destination);
      rec.ctx = ctx;
    };
    attach();
  });
}

export async function stopRemoteRecorder(page) {
  const { rate, samples } = await page.evaluate(() => {
    const rec = window.__remoteRecorder;
    if (rec.ctx) rec.ctx.close();
    return { rate: rec.rate, samples: rec.chunks.flat() };
  });
  return { rate, samples: Float32Array.from(samples) };
}

// Runs in the page before its scripts: every WebSocket the page makes logs
// the JSON it sends and receives in window.__wsLog as {dir, msg, at}, and
// window.__sockets holds the sockets themselves.
function recordWebSocketInPage() {
  const Native = window.WebSocket;
  const log = [], sockets = [];
  const note = (dir, data) => { try { log.push({ dir, msg: JSON.parse(data), at: Date.now() }); } catch { /* not JSON */ } };
  class Recorded extends Native {
    constructor(...args) {
      super(...args);
      sockets.push(this);
      this.addEventListener('message', (ev) => note('in', ev.data));
    }
    send(data) { note('out', data); return super.send(data); }
  }
  window.__wsLog = log;
  window.__sockets = sockets;
  window.WebSocket = Recorded;
}

// The page's recorded WebSocket messages (openPage with recordWs), optionally
// only one direction.
export async function wsLog(page, dir) {
  const log = await page.evaluate(() => window.__wsLog || []);
  return dir ? log.filter((e) => e.dir === dir).map((e) => e.msg) : log;
}

// Waits until the page has sent (dir 'out') or received ('in') a message
// for which pred(msg) holds, counting only those after the first `skip`; returns it.
export async function waitForWs(page, dir, pred, { skip = 0, timeoutMs = 10000 } = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const found = (await wsLog(page, dir)).slice(skip).find(pred);
    if (found) return found;
    if (Date.now() > end) throw new Error(`no ${dir === 'out' ? 'sent' : 'received'} message matched within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// Audio RTP the page's peer connection (window.tingshuo.pc) has received
// and sent so far, from getStats(): {received, sent} bytes of payload and
// {packetsReceived, packetsSent}.
export async function rtpCounts(page) {
  return page.evaluate(async () => {
    const pc = window.tingshuo && window.tingshuo.pc;
    const out = { received: 0, sent: 0, packetsReceived: 0, packetsSent: 0 };
    if (!pc) return out;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.received += s.bytesReceived || 0;
        out.packetsReceived += s.packetsReceived || 0;
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        out.sent += s.bytesSent || 0;
        out.packetsSent += s.packetsSent || 0;
      }
    });
    return out;
  });
}

// Records what the page plays for `ms` and compares its energy envelope with
// the spoken part of `wav` (what the fake microphone loops): the echo agent's
// reply is that sentence. before/after: the silence speechWav put around it.
// Returns {corr, peak, seconds}.
export async function measureEcho(page, wav, ms, { before = 0.5, after = 3 } = {}) {
  await startRemoteRecorder(page);
  await page.waitForTimeout(ms);
  const got = await stopRemoteRecorder(page);
  const sent = readWav(wav);
  const peak = got.samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const sentEnv = envelope(sent.samples, sent.rate).slice(Math.round(before * 50) - 5, -(Math.round(after * 50) - 10));
  const { corr } = bestCorrelation(envelope(got.samples, got.rate), sentEnv);
  return { corr, peak, seconds: got.samples.length / (got.rate || 1) };
}
