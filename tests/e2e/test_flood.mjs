// Garbage on the media port must not hurt a call. While Chromium talks to
// the echo agent, another socket floods the worker's UDP port with random
// datagrams, some dressed as STUN, DTLS, RTP and RTCP by their first byte.
// The echo must still match the sentence, and the server stay healthy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { startServer, launchBrowser, openPage, tempDir, speechWav, readWav, envelope,
  bestCorrelation, startRemoteRecorder, stopRemoteRecorder } from '../lib/harness.mjs';

test('a UDP garbage flood does not affect the call', async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'flood', 'Please repeat these words back to me clearly.', { before: 0.5, after: 3 });
  const srv = await startServer({ args: ['--agent', 'echo', '--media-workers', '1'] });
  const browser = await launchBrowser({ wav });
  const sock = dgram.createSocket('udp4');
  let sent = 0, timer;
  try {
    const { page, assertNoErrors } = await openPage(browser, srv.url);
    await page.waitForSelector('#status[data-state="ready"]');
    await page.click('#call');
    await page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
    const sdp = await page.evaluate(() => window.tingshuo.pc.remoteDescription.sdp);
    const port = Number(/a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host/.exec(sdp)[1]);

    // ~2000 datagrams a second for the whole recording, bounded in count.
    const firsts = [0, 1, 22, 23, 128, 0x80, 0x90, 200, 255];
    timer = setInterval(() => {
      for (let i = 0; i < 40 && sent < 40000; i++, sent++) {
        const b = randomBytes(12 + Math.floor(Math.random() * 1200));
        b[0] = firsts[sent % firsts.length];
        if (b[0] === 0x80) b[1] = 200 + (sent % 10); // RTCP-looking
        if (b[0] < 2) b.writeUInt32BE(0x2112a442, 4); // STUN magic cookie
        sock.send(b, port, '127.0.0.1');
      }
    }, 20);
    await startRemoteRecorder(page);
    await page.waitForTimeout(9000);
    const got = await stopRemoteRecorder(page);
    clearInterval(timer);
    assert.ok(sent > 10000, `sent ${sent} garbage datagrams`);

    const want = readWav(wav);
    const { corr } = bestCorrelation(envelope(got.samples, got.rate), envelope(want.samples, want.rate).slice(20, -140));
    console.log(`under a flood of ${sent} datagrams: echo envelope correlation ${corr.toFixed(3)}`);
    assert.ok(corr > 0.7, `the echo still matches (correlation ${corr.toFixed(3)})`);
    assert.equal(await page.getAttribute('#status', 'data-state'), 'incall');
    assert.equal((await (await fetch(srv.url + 'healthz')).json()).calls, 1);
    await page.click('#hangup');
    assertNoErrors();
  } finally {
    clearInterval(timer);
    sock.close();
    await browser.close();
    await srv.stop();
  }
});
