// A real call from Firefox to a server with its default media settings, as
// `make run` starts it (listen on a loopback address, nothing announced by
// hand). Firefox uses no loopback candidate, so this passes only if the
// server offers an address Firefox does use and receives on it. The page
// speaks a sentence and calls the echo agent; what comes back must be
// that sentence, by its energy envelope, not just sound.
import { test } from 'node:test';
import { rmSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import assert from 'node:assert/strict';
import { startServer, tempDir, speechWav, readWav, envelope, bestCorrelation } from '../lib/harness.mjs';
import { launchFirefox, closeFirefox, openFirefoxPage, speakInPage, recordRemote, selectedPair } from '../lib/firefox.mjs';

const isLoopback = (ip) => /^127\./.test(ip) || ip === '::1';
// An IPv4 address other than loopback and link-local: without one Firefox
// has nothing to send from, whatever the server does.
const networked = Object.values(networkInterfaces()).flat()
  .some((a) => a.family === 'IPv4' && !a.internal && !a.address.startsWith('169.254.'));

test('Firefox calls the echo agent on the default settings and hears itself',
  { skip: !networked && 'this machine has no network interface but loopback' }, async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'sentence', 'The quick brown fox jumps over the lazy dog.', { before: 0.5, after: 3 });
  const srv = await startServer({ args: ['--agent', 'echo'] });
  let browser;
  try {
    const offered = /candidates offered to browsers: (.*)/.exec(srv.stderr);
    assert.ok(offered, `the server logs the addresses it offers:\n${srv.stderr}`);
    const addresses = offered[1].trim().split(', ');
    assert.ok(addresses.some((a) => !isLoopback(a)), `an address other than loopback is offered: ${offered[1]}`);

    browser = await launchFirefox();
    const { page, assertNoErrors } = await openFirefoxPage(browser, srv.url, { init: speakInPage(wav) });
    await page.waitForSelector('#status[data-state="ready"]');
    await page.click('#call');
    await page.waitForSelector('#status[data-state="incall"]', { timeout: 20000 }).catch(async (err) => {
      const why = await page.evaluate(() => `${document.getElementById('status').textContent}; ICE ${
        window.tingshuo.pc ? window.tingshuo.pc.iceConnectionState : 'none'}`).catch(() => '');
      throw new Error(`no call: ${why} (${err.message})\n${srv.stderr}`);
    });
    const health = await (await fetch(srv.url + 'healthz')).json();
    assert.equal(health.calls, 1);

    const pair = await selectedPair(page);
    console.log(`ICE pair: ${JSON.stringify(pair)}`);
    assert.ok(pair, 'Firefox has selected a candidate pair');
    assert.ok(addresses.includes(pair.remote.address), `the pair's server side ${pair.remote.address} is one offered`);
    assert.ok(!isLoopback(pair.remote.address), 'Firefox reached the server on an interface address');

    const got = await recordRemote(page, 12000, dir); // the file loops every ~6.5 s: a full echo at least
    await page.click('#hangup');
    await page.waitForSelector('#status[data-state="ready"]');

    assert.ok(got.samples.length > got.rate * 5, `recorded ${got.samples.length} samples at ${got.rate} Hz`);
    const peak = got.samples.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(peak > 0.05, `the echo is audible (peak ${peak.toFixed(3)})`);
    const sent = readWav(wav);
    const sentEnv = envelope(sent.samples, sent.rate).slice(20, -140); // the spoken part
    const { corr } = bestCorrelation(envelope(got.samples, got.rate), sentEnv);
    console.log(`echo envelope correlation ${corr.toFixed(3)}, peak ${peak.toFixed(3)}`);
    assert.ok(corr > 0.7, `the echo matches the sentence (envelope correlation ${corr.toFixed(3)})`);
    assertNoErrors();

    for (let i = 0; i < 50 && (await (await fetch(srv.url + 'healthz')).json()).calls !== 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal((await (await fetch(srv.url + 'healthz')).json()).calls, 0, 'the hangup freed the call');
  } finally {
    if (browser) await closeFirefox(browser);
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
