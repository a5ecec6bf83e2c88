// The browser harness itself: Chromium loads the page with no console error,
// the page reaches the server, and Chromium's fake microphone plays a WAV
// file we made, which the page can hear.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startServer, launchBrowser, openPage, tempDir } from '../lib/harness.mjs';

test('page loads, connects, and hears the fake microphone', async () => {
  const dir = tempDir();
  const wav = join(dir, 'tone.wav');
  // 2 s of a 440 Hz tone at 48 kHz mono, 16-bit: what the fake device expects.
  execFileSync('sox', ['-n', '-r', '48000', '-c', '1', '-b', '16', wav, 'synth', '2', 'sine', '440', 'vol', '0.5']);
  const srv = await startServer();
  const browser = await launchBrowser({ wav });
  try {
    const { page, assertNoErrors } = await openPage(browser, srv.url);
    await page.waitForSelector('#status[data-state="ready"]', { timeout: 10000 });
    assert.match(await page.textContent('#status'), /Connected to tingshuo/);

    // Through Web Audio, measure what the microphone delivers.
    const rms = await page.evaluate(async () => {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const ctx = new AudioContext();
      const src = ctx.createMediaStreamSource(stream);
      const an = ctx.createAnalyser();
      an.fftSize = 2048;
      src.connect(an);
      const buf = new Float32Array(an.fftSize);
      let best = 0;
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 50));
        an.getFloatTimeDomainData(buf);
        let s = 0;
        for (const v of buf) s += v * v;
        best = Math.max(best, Math.sqrt(s / buf.length));
      }
      stream.getTracks().forEach((t) => t.stop());
      await ctx.close();
      return best;
    });
    assert.ok(rms > 0.1, `microphone RMS ${rms}`);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
  }
});
