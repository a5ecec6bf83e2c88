// Call recordings end to end: the voice agent on the embedded engines greets
// the caller at length, the C client says "Stop, please." over the greeting,
// the AI stops and answers. The server's recording, decoded with opusdec,
// must hold the caller on the left where the client played its WAV, the AI
// on the right as the client heard it, the barge-in (both voices, then the
// AI stops), and last as long as the call. A server killed during a call
// leaves a file that plays up to its last second. With record_calls off no
// file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { readFileSync, readdirSync, existsSync, copyFileSync, rmSync, statSync } from 'node:fs';
import { BIN, startServer, run, tempDir, speechWav, readWav, envelope, bestCorrelation } from '../lib/harness.mjs';

const GREETING = 'Hello and welcome to the recorded line. I am going to read you a long notice ' +
  'about the opening hours of the harbour office, the ferry timetable for the summer, and the ' +
  'rules for parking bicycles near the pier, so please listen carefully until the end.';
const VOICE = ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0'];
const VOICED = -40; // dBFS per 20 ms frame
const QUIET = -55;

// Ogg pages of a file: header type, granule position, and the packets they complete.
function oggPages(buf) {
  const pages = [];
  let off = 0;
  while (off + 27 <= buf.length) {
    assert.equal(buf.toString('ascii', off, off + 4), 'OggS', `page at ${off}`);
    const nseg = buf[off + 26];
    const lacing = buf.subarray(off + 27, off + 27 + nseg);
    const body = lacing.reduce((a, b) => a + b, 0);
    const start = off + 27 + nseg;
    const packets = [];
    let at = start, cur = 0;
    for (const l of lacing) {
      cur += l;
      if (l < 255) { packets.push(buf.subarray(at, at + cur)); at += cur; cur = 0; }
    }
    pages.push({ type: buf[off + 5], granule: Number(buf.readBigInt64LE(off + 6)), packets });
    off = start + body;
  }
  assert.equal(off, buf.length, 'the file ends with a whole page');
  return pages;
}

// Bytes of `buf` up to the end of its last complete page (a crash may cut one short).
function wholePages(buf) {
  let off = 0;
  while (off + 27 <= buf.length) {
    const nseg = buf[off + 26];
    if (off + 27 + nseg > buf.length) break;
    const body = buf.subarray(off + 27, off + 27 + nseg).reduce((a, b) => a + b, 0);
    if (off + 27 + nseg + body > buf.length) break;
    off += 27 + nseg + body;
  }
  return off;
}

// A 16-bit WAV's channels as Float32Arrays.
function readStereo(path) {
  const b = readFileSync(path);
  let off = 12, rate = 0, channels = 0;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4), size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') { channels = b.readUInt16LE(off + 10); rate = b.readUInt32LE(off + 12); }
    if (id === 'data') {
      const n = Math.floor(Math.min(size, b.length - off - 8) / 2 / channels);
      const ch = Array.from({ length: channels }, () => new Float32Array(n));
      for (let i = 0; i < n; i++)
        for (let c = 0; c < channels; c++) ch[c][i] = b.readInt16LE(off + 8 + (i * channels + c) * 2) / 32768;
      return { rate, channels: ch };
    }
    off += 8 + size + (size & 1);
  }
  throw new Error(`${path}: no data chunk`);
}

// The recording of the call, once the server has finished it (end-of-stream page).
async function finishedRecording(dataDir, id, timeoutMs = 10000) {
  const path = join(dataDir, 'recordings', `${id}.ogg`);
  const t0 = Date.now();
  for (;;) {
    if (existsSync(path)) {
      const pages = oggPages(readFileSync(path));
      if (pages.length && pages[pages.length - 1].type & 4) return { path, pages };
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`${path} was not finished in time`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const firstFrom = (env, from, pred) => { for (let i = from; i < env.length; i++) if (pred(env[i], i)) return i; return -1; };

test('a recorded call: caller left, AI right, in time, barge-in visible', { timeout: 120000 }, async () => {
  const dir = tempDir('tingshuo-rec-');
  const wav = speechWav(dir, 'stop', 'Stop, please.', { before: 4.0, after: 3.0 });
  const srv = await startServer({ args: [...VOICE, '--record-calls', 'on', '--greeting', GREETING] });
  try {
    const heardPath = join(dir, 'heard.wav');
    const res = await run(['call', srv.url, '--play', wav, '--record', heardPath, '--timeout', '60'],
      { timeoutMs: 90000 });
    assert.equal(res.code, 0, `exit ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    const id = /\] answer: call ([0-9a-f]+)$/m.exec(res.stdout)[1];
    assert.match(res.stdout, /reply \(interrupted\)/, 'the greeting was interrupted');

    const { path, pages } = await finishedRecording(srv.dataDir, id);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(statSync(join(srv.dataDir, 'recordings')).mode & 0o777, 0o700);
    assert.deepEqual(readdirSync(join(srv.dataDir, 'recordings')), [`${id}.ogg`]);

    // OpusHead: 2 channels, mapping family 1, 2 streams, none coupled, left = stream 0.
    const head = pages[0].packets[0];
    assert.equal(head.toString('ascii', 0, 8), 'OpusHead');
    assert.equal(head[9], 2);
    assert.deepEqual([...head.subarray(18, 23)], [1, 2, 0, 0, 1]);
    assert.equal(pages[0].packets.length, 1);
    assert.equal(pages[1].packets[0].toString('ascii', 0, 8), 'OpusTags');
    // Granule positions: 960 samples per packet, every page.
    let packets = 0;
    for (const p of pages.slice(2)) {
      packets += p.packets.length;
      assert.equal(p.granule, packets * 960);
    }
    const seconds = (packets * 960 - head.readUInt16LE(10)) / 48000;

    const copy = join(dir, 'call.ogg'), decoded = join(dir, 'call.wav');
    copyFileSync(path, copy);
    execFileSync('opusdec', ['--quiet', '--no-dither', '--rate', '48000', copy, decoded]);
    const rec = readStereo(decoded);
    assert.equal(rec.rate, 48000);
    assert.equal(rec.channels.length, 2);
    assert.ok(Math.abs(rec.channels[0].length / 48000 - seconds) < 0.05);

    // As long as the call: the client's own recording runs from media start to hang-up.
    const heard = readWav(heardPath);
    const callSeconds = heard.samples.length / heard.rate;
    assert.ok(Math.abs(seconds - callSeconds) < 0.5, `recording ${seconds} s, call ${callSeconds} s`);

    const L = envelope(rec.channels[0], 48000), R = envelope(rec.channels[1], 48000);
    const W = envelope(readWav(wav).samples, 48000), H = envelope(heard.samples, heard.rate);

    // Left: the caller's WAV, where it was played (plus the uplink and jitter buffer).
    const left = bestCorrelation(L, W);
    console.log(`left vs the played WAV: corr ${left.corr.toFixed(2)}, left later by ${left.lag * 20} ms`);
    assert.ok(left.corr > 0.7, `left correlation ${left.corr}`);
    assert.ok(left.lag >= 0 && left.lag * 20 <= 200, `left lag ${left.lag * 20} ms`);
    // Right: what the client heard, a little earlier (the downlink and its jitter buffer).
    const right = bestCorrelation(H, R);
    console.log(`right vs what the caller heard: corr ${right.corr.toFixed(2)}, heard later by ${right.lag * 20} ms`);
    assert.ok(right.corr > 0.8, `right correlation ${right.corr}`);
    assert.ok(right.lag >= 0 && right.lag * 20 <= 200, `right lag ${right.lag * 20} ms`);

    // The barge-in: the greeting plays on the right until the caller speaks on the left;
    // both are voiced together for a moment; then the right goes quiet.
    const onset = firstFrom(L, 0, (db) => db > VOICED);
    assert.ok(onset * 20 >= 3800 && onset * 20 <= 4600, `caller onset at ${onset * 20} ms`);
    const greetingFrames = R.slice(0, onset).filter((db) => db > VOICED).length;
    assert.ok(greetingFrames * 20 > 2500, `${greetingFrames * 20} ms of greeting before the caller spoke`);
    const quiet = firstFrom(R, onset, (_, i) => R.slice(i, i + 15).every((db) => db < QUIET));
    assert.ok(quiet > onset, 'the AI went quiet after the onset');
    const overlap = R.slice(onset, quiet).filter((db, k) => db > VOICED && L[onset + k] > VOICED).length;
    console.log(`barge-in: AI quiet ${(quiet - onset) * 20} ms after the caller's onset, ${overlap * 20} ms of both voices`);
    assert.ok(overlap >= 1, 'both voices overlap');
    assert.ok((quiet - onset) * 20 <= 800, `the AI stopped ${(quiet - onset) * 20} ms after the onset`);
    // No cross-talk: the left is quiet while only the AI speaks (before the caller's onset).
    assert.ok(L.slice(5, onset - 5).every((db) => db < QUIET), 'the left is quiet during the greeting');

    // The answer: on the right, after the caller's speech ends.
    const speechEnd = L.length - 1 - [...L].reverse().findIndex((db) => db > VOICED);
    const answer = firstFrom(R, speechEnd, (db) => db > VOICED);
    assert.ok(answer > speechEnd, 'the AI answered after the caller finished');
    console.log(`answer ${(answer - speechEnd) * 20} ms after the caller's last voiced frame`);
    assert.ok((answer - speechEnd) * 20 < 4000);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a server killed during a call leaves a playable recording', { timeout: 60000 }, async () => {
  const dir = tempDir('tingshuo-rec-');
  const wav = speechWav(dir, 'long', 'This is a long call that will not end well, because the ' +
    'server is going to be killed in the middle of it.', { before: 0.3, after: 5 });
  const srv = await startServer({ args: ['--agent', 'echo', '--record-calls', 'on'] });
  const client = spawn(BIN, ['call', srv.url, '--play', wav, '--timeout', '20']);
  let out = '';
  client.stdout.on('data', (d) => { out += d; });
  try {
    for (let i = 0; i < 100 && !/media: ICE and DTLS done/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
    const id = /\] answer: call ([0-9a-f]+)$/m.exec(out)[1];
    await new Promise((r) => setTimeout(r, 3500));
    srv.child.kill('SIGKILL');
    const path = join(srv.dataDir, 'recordings', `${id}.ogg`);
    const buf = readFileSync(path);
    const pages = oggPages(buf.subarray(0, wholePages(buf)));
    assert.equal(pages[pages.length - 1].type & 4, 0, 'no end-of-stream page');
    const packets = pages.slice(2).reduce((n, p) => n + p.packets.length, 0);
    const seconds = packets * 960 / 48000;
    console.log(`killed after 3.5 s: ${seconds} s recorded`);
    assert.ok(seconds >= 2 && seconds <= 3.6, `${seconds} s recorded`);
    const copy = join(dir, 'killed.ogg'), decoded = join(dir, 'killed.wav');
    copyFileSync(path, copy);
    execFileSync('opusdec', ['--quiet', '--no-dither', '--rate', '48000', copy, decoded]);
    const rec = readStereo(decoded);
    assert.ok(Math.abs(rec.channels[0].length / 48000 - (seconds - 312 / 48000)) < 0.05);
    assert.ok(envelope(rec.channels[0], 48000).some((db) => db > -40), 'the caller is in it');
  } finally {
    client.kill('SIGKILL');
    await srv.stop({ expectClean: false });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('record_calls off: no recording', { timeout: 60000 }, async () => {
  const dir = tempDir('tingshuo-rec-');
  const wav = speechWav(dir, 'hi', 'Hello there.', { before: 0.3, after: 1.5 });
  const srv = await startServer({ args: ['--agent', 'echo'] });
  try {
    const res = await run(['call', srv.url, '--play', wav, '--timeout', '30'], { timeoutMs: 45000 });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(!existsSync(join(srv.dataDir, 'recordings')), 'no recordings directory');
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
