// A real call: Chromium's microphone plays a spoken sentence, the page calls
// the echo agent over WebRTC, and what the page hears back must be that
// sentence: its energy envelope has to match the one played, not just be
// non-silent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, tempDir, speechWav, readWav, envelope,
  bestCorrelation, startRemoteRecorder, stopRemoteRecorder } from '../lib/harness.mjs';

test('the echo agent plays the caller back through WebRTC', async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'sentence', 'The quick brown fox jumps over the lazy dog.', { before: 0.5, after: 3 });
  const srv = await startServer({ args: ['--agent', 'echo', '--log-level', 'debug'] });
  const browser = await launchBrowser({ wav });
  try {
    const { page, assertNoErrors } = await openPage(browser, srv.url);
    await page.waitForSelector('#status[data-state="ready"]');
    await page.click('#call');
    await page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
    const health = await (await fetch(srv.url + 'healthz')).json();
    assert.equal(health.calls, 1);
    await startRemoteRecorder(page);
    await page.waitForTimeout(9000); // the file loops every ~6 s: at least one full echo
    const got = await stopRemoteRecorder(page);
    await page.click('#hangup');
    await page.waitForSelector('#status[data-state="ready"]');

    const sent = readWav(wav);
    assert.ok(got.samples.length > got.rate * 5, `recorded ${got.samples.length} samples`);
    const peak = got.samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(peak > 0.05, `the echo is audible (peak ${peak.toFixed(3)})`);
    // The spoken part of what was sent, against everything received.
    const sentEnv = envelope(sent.samples, sent.rate).slice(20, -140);
    const gotEnv = envelope(got.samples, got.rate);
    const { corr } = bestCorrelation(gotEnv, sentEnv);
    console.log(`echo envelope correlation ${corr.toFixed(3)}, peak ${peak.toFixed(3)}`);
    assert.ok(corr > 0.7, `the echo matches the sentence (envelope correlation ${corr.toFixed(3)})`);
    assertNoErrors();

    // the hangup freed the call on the server
    for (let i = 0; i < 50 && (await (await fetch(srv.url + 'healthz')).json()).calls !== 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal((await (await fetch(srv.url + 'healthz')).json()).calls, 0);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
