// A call recording in Chromium: the echo agent answers a `tingshuo call`
// with --record-calls on, and the file the server wrote is served (with
// HTTP range requests, as the API serves it) to a page whose <audio>
// element must know its length, seek into its middle and play from there,
// and whose Web Audio decoder must find two channels: the caller's
// utterance on the left, and its echo, later, on the right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, run, tempDir, speechWav, readWav, envelope, launchBrowser, openPage } from '../lib/harness.mjs';

// The last Ogg page of `bytes`: {type, granule}, walking the pages from the start.
function lastPage(bytes) {
  let off = 0, last = null;
  while (off + 27 <= bytes.length && bytes.toString('ascii', off, off + 4) === 'OggS') {
    const nseg = bytes[off + 26];
    let body = 0;
    for (let i = 0; i < nseg; i++) body += bytes[off + 27 + i];
    if (off + 27 + nseg + body > bytes.length) break;
    last = { type: bytes[off + 5], granule: Number(bytes.readBigInt64LE(off + 6)) };
    off += 27 + nseg + body;
  }
  return last;
}

// Serves one file at /rec.ogg with Range support, and an empty page at /.
function serveFile(bytes) {
  const srv = createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end('<!doctype html><title>recording</title><audio id="a" preload="metadata"></audio>');
    }
    if (req.url === '/favicon.ico') { res.writeHead(204); return res.end(); }
    if (req.url !== '/rec.ogg') { res.writeHead(404); return res.end(); }
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || '');
    if (!m) {
      res.writeHead(200, { 'content-type': 'audio/ogg', 'content-length': bytes.length, 'accept-ranges': 'bytes' });
      return res.end(bytes);
    }
    const start = m[1] ? Number(m[1]) : bytes.length - Number(m[2]);
    const end = m[1] && m[2] ? Math.min(Number(m[2]), bytes.length - 1) : bytes.length - 1;
    srv.ranges = (srv.ranges || 0) + 1;
    res.writeHead(206, { 'content-type': 'audio/ogg', 'accept-ranges': 'bytes',
      'content-range': `bytes ${start}-${end}/${bytes.length}`, 'content-length': end - start + 1 });
    res.end(bytes.subarray(start, end + 1));
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

test('Chromium plays, seeks and decodes a call recording', { timeout: 120000 }, async () => {
  const dir = tempDir('tingshuo-recplay-');
  const wav = speechWav(dir, 'hello', 'Hello there, this call is being recorded.', { before: 0.5, after: 3.0 });
  const srv = await startServer({ args: ['--agent', 'echo', '--record-calls', 'on'] });
  let http, browser;
  try {
    const res = await run(['call', srv.url, '--play', wav, '--timeout', '40'], { timeoutMs: 60000 });
    assert.equal(res.code, 0, res.stdout + res.stderr);
    const id = /\] answer: call ([0-9a-f]+)$/m.exec(res.stdout)[1];
    const path = join(srv.dataDir, 'recordings', `${id}.ogg`);
    let bytes;
    for (let i = 0; i < 50; i++) { // finished when its last page has the end-of-stream flag
      bytes = readdirSync(join(srv.dataDir, 'recordings')).length ? readFileSync(path) : null;
      if (bytes && lastPage(bytes) && lastPage(bytes).type & 4) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(lastPage(bytes).type & 4, 'the recording was finished');
    http = await serveFile(bytes);
    const base = `http://127.0.0.1:${http.address().port}`;
    browser = await launchBrowser();
    const { page, assertNoErrors } = await openPage(browser, base + '/', { permissions: [] });

    const media = await page.evaluate(async () => {
      const a = document.getElementById('a');
      const once = (ev) => new Promise((resolve, reject) => {
        a.addEventListener(ev, resolve, { once: true });
        a.addEventListener('error', () => reject(new Error(`media error ${a.error && a.error.code}`)), { once: true });
      });
      const loaded = once('loadedmetadata');
      a.src = '/rec.ogg';
      await loaded;
      const duration = a.duration;
      const seeked = once('seeked');
      a.currentTime = duration / 2;
      await seeked;
      const at = a.currentTime;
      await a.play();
      await new Promise((r) => setTimeout(r, 600));
      const played = a.currentTime - at;
      a.pause();
      return { duration, at, played };
    });
    console.log(`<audio>: ${JSON.stringify(media)}, ${http.ranges || 0} range requests`);
    const seconds = (lastPage(bytes).granule - bytes.readUInt16LE(bytes.indexOf('OpusHead') + 10)) / 48000;
    assert.ok(Math.abs(media.duration - seconds) < 0.05, `duration ${media.duration}, file ${seconds}`);
    assert.ok(Math.abs(media.at - seconds / 2) < 0.1, `seeked to ${media.at}`);
    assert.ok(media.played > 0.2, `played ${media.played} s after the seek`);

    // Web Audio: two channels; the caller's utterance first on the left, its echo later on the right.
    const dec = await page.evaluate(async () => {
      const buf = await (await fetch('/rec.ogg')).arrayBuffer();
      const ctx = new OfflineAudioContext(2, 48000, 48000);
      const audio = await ctx.decodeAudioData(buf);
      const env = (ch) => {
        const x = audio.getChannelData(ch), n = audio.sampleRate / 50, out = [];
        for (let i = 0; i + n <= x.length; i += n) {
          let s = 0;
          for (let k = i; k < i + n; k++) s += x[k] * x[k];
          out.push(10 * Math.log10(s / n + 1e-10));
        }
        return out;
      };
      return { channels: audio.numberOfChannels, seconds: audio.duration, left: env(0), right: env(1) };
    });
    assert.equal(dec.channels, 2);
    assert.ok(Math.abs(dec.seconds - seconds) < 0.1, `decoded ${dec.seconds} s`);
    const first = (e) => e.findIndex((db) => db > -40);
    const l = first(dec.left), r = first(dec.right);
    console.log(`decoded: left voiced from ${l * 20} ms, right from ${r * 20} ms`);
    assert.ok(l >= 0 && r >= 0, 'both channels carry speech');
    const spoken = first(envelope(readWav(wav).samples, 48000)); // in the WAV the client played
    assert.ok(l >= spoken && (l - spoken) * 20 <= 300, `the caller speaks at ${l * 20} ms, in the WAV at ${spoken * 20} ms`);
    assert.ok(r > l + 50, 'the echo comes after the utterance, on the right');
    assertNoErrors();
  } finally {
    if (browser) await browser.close();
    if (http) http.close();
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
