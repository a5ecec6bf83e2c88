// `tingshuo call`: the command-line WebRTC client against the real server
// with the echo agent. It speaks a flite-made utterance (16 kHz stereo, so
// the client has to resample and down-mix), prints the server's events, and
// records what it hears: the recording must be the utterance played back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { rmSync, existsSync } from 'node:fs';
import { startServer, run, tempDir, speechWav, readWav, envelope, bestCorrelation } from '../lib/harness.mjs';

function utterance(dir) {
  const wav48 = speechWav(dir, 'hello', 'Hello there. This is a call from the command line client.',
    { before: 0.5, after: 3.0 });
  const wav16 = join(dir, 'hello16.wav');
  execFileSync('sox', [wav48, '-r', '16000', '-c', '2', wav16]);
  return { wav48, wav16 };
}

test('a call speaks, prints events and records the echo', async () => {
  const dir = tempDir('tingshuo-call-');
  const srv = await startServer({ args: ['--agent', 'echo'] });
  try {
    const { wav48, wav16 } = utterance(dir);
    const out = join(dir, 'out.wav');
    const res = await run(['call', srv.url, '--play', wav16, '--record', out, '--timeout', '40'],
      { timeoutMs: 60000 });
    assert.equal(res.code, 0, `exit ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    const lines = res.stdout.trim().split('\n');
    assert.ok(lines.some((l) => /^\[\s*\d+\.\d{3}\] hello: tingshuo /.test(l)), res.stdout);
    assert.ok(lines.some((l) => /\] answer: call [0-9a-f]+$/.test(l)), res.stdout);
    assert.ok(lines.some((l) => /\] connected: call [0-9a-f]+$/.test(l)), res.stdout);
    assert.ok(lines.some((l) => /\] media: ICE and DTLS done/.test(l)), res.stdout);

    const input = readWav(wav48), heard = readWav(out);
    assert.equal(heard.rate, 48000);
    assert.ok(heard.samples.length > input.samples.length * 0.9, 'recording shorter than the call');
    const a = envelope(heard.samples, heard.rate), b = envelope(input.samples, input.rate);
    const speech = b.filter((db) => db > -40).length;
    const loud = a.filter((db) => db > -40).length;
    assert.ok(loud > speech * 0.7, `heard ${loud} voiced frames, sent ${speech}`);
    const { corr, lag } = bestCorrelation(a, b);
    assert.ok(corr > 0.7, `envelope correlation ${corr.toFixed(2)} (lag ${lag} frames)`);
    // The echo comes after the utterance, not over it.
    assert.ok(lag * 20 > 1000, `echo lag ${lag * 20} ms`);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a call over wss:// to a self-signed server with --insecure', async () => {
  const dir = tempDir('tingshuo-call-');
  const srv = await startServer({ args: ['--agent', 'echo', '--https-listen', '127.0.0.1:0'] });
  try {
    const wav = speechWav(dir, 'short', 'Testing secure signaling.', { before: 0.3, after: 2.0 });
    const res = await run(['call', srv.httpsUrl, '--play', wav, '--insecure', '--timeout', '30'],
      { timeoutMs: 45000 });
    assert.equal(res.code, 0, `exit ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    assert.match(res.stdout, /connected: call/);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a dead URL fails with a clear message', async () => {
  const dir = tempDir('tingshuo-call-');
  try {
    const wav = speechWav(dir, 'x', 'nobody is there', { before: 0.1, after: 0.1 });
    // A port nothing listens on: bind one, note it, close it.
    const net = await import('node:net');
    const port = await new Promise((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    });
    const res = await run(['call', `ws://127.0.0.1:${port}/ws`, '--play', wav], { timeoutMs: 20000 });
    assert.equal(res.code, 1);
    assert.match(res.stderr, new RegExp(`tingshuo call: call failed: cannot connect to ws://127\\.0\\.0\\.1:${port}/ws`));

    const bad = await run(['call', 'ftp://x/', '--play', wav]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /bad URL "ftp:\/\/x\/": the scheme must be/);

    const nofile = await run(['call', `ws://127.0.0.1:${port}/ws`, '--play', join(dir, 'missing.wav')]);
    assert.equal(nofile.code, 1);
    assert.match(nofile.stderr, /missing\.wav: No such file or directory/);

    const usage = await run(['call', `ws://127.0.0.1:${port}/ws`]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--play FILE is required/);
    assert.ok(!existsSync(join(dir, 'out.wav')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a server that never answers is a failed call, not a hang', async () => {
  const dir = tempDir('tingshuo-call-');
  const { WebSocketServer } = await import('ws');
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => wss.once('listening', resolve));
  const offers = [];
  wss.on('connection', (ws) => ws.on('message', (m) => offers.push(JSON.parse(m.toString()))));
  try {
    const wav = speechWav(dir, 'y', 'hello', { before: 0.1, after: 0.5 });
    const t0 = Date.now();
    const res = await run(['call', `ws://127.0.0.1:${wss.address().port}/ws`, '--play', wav,
      '--config', '{"language":"en"}'], { timeoutMs: 30000 });
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stderr, /call failed: no answer from the server in time/);
    assert.ok(Date.now() - t0 < 20000);
    // What it sent is an offer as docs/protocol.md describes it.
    assert.equal(offers.length, 1);
    assert.equal(offers[0].type, 'offer');
    assert.deepEqual(offers[0].config, { language: 'en' });
    const sdp = offers[0].sdp;
    assert.match(sdp, /^m=audio \d+ UDP\/TLS\/RTP\/SAVPF 111/m);
    assert.match(sdp, /^a=rtpmap:111 opus\/48000\/2/m);
    assert.match(sdp, /^a=setup:active/m);
    assert.match(sdp, /^a=fingerprint:sha-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}/m);
    assert.match(sdp, /^a=ice-ufrag:\S+/m);
    assert.match(sdp, /^a=candidate:1 1 udp \d+ 127\.0\.0\.1 \d+ typ host/m);
  } finally {
    wss.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
