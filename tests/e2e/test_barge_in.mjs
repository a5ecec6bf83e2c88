// Barge-in at the browser: the AI greets the caller with a long speech, the
// caller says "stop" in the middle of it, and the AI's audio stops. Both
// directions are recorded on the page's one audio clock, so the time from
// the caller's first syllable to the AI's silence is measured where a
// person would notice it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { startServer, launchBrowser, tempDir, envelope } from '../lib/harness.mjs';
import { VOICE_AGENT_ARGS, startRecordedCall, events, waitForEvent, stopDuplexRecorder } from '../lib/voice.mjs';

const GREETING = 'Hello and welcome. I am going to tell you a rather long story about a small ' +
  'village by the sea, where the fishermen went out every morning before sunrise, and the ' +
  'children ran along the beach collecting shells until the boats came home in the evening.';

test('the caller interrupts and the AI stops at once', { timeout: 180000 }, async () => {
  const dir = tempDir();
  const raw = join(dir, 'stop.raw.wav'), wav = join(dir, 'stop.wav');
  execFileSync('flite', ['-voice', 'slt', '-t', 'Stop, please.', '-o', raw]);
  execFileSync('sox', [raw, '-r', '48000', '-c', '1', '-b', '16', wav, 'pad', '5', '25']);
  const srv = await startServer({ args: [...VOICE_AGENT_ARGS, '--greeting', GREETING] });
  const browser = await launchBrowser({ wav });
  try {
    const { page } = await startRecordedCall(browser, srv.url);
    const cut = await waitForEvent(page, (e) => e.type === 'reply' && e.interrupted, 40000);
    console.log(`interrupted after: "${cut.text}"`);
    assert.ok(cut.text.length < GREETING.length, 'only part of the greeting was played');
    await page.waitForTimeout(1500);
    const rec = await stopDuplexRecorder(page);

    const lat = (await events(page, 'latency')).find((e) => typeof e.barge_in_ms === 'number');
    assert.ok(lat, 'a latency event with barge_in_ms');
    console.log(`server: barge_in_ms ${lat.barge_in_ms}, onset_lag_ms ${lat.onset_lag_ms}`);
    assert.ok(lat.barge_in_ms <= 100, `the server stopped within 100 ms of the detected onset (${lat.barge_in_ms})`);

    // At the browser: the caller's onset, then the moment the AI went quiet.
    const mic = envelope(rec.mic, rec.rate), remote = envelope(rec.remote, rec.rate);
    const onset = mic.findIndex((db, i) => i > 10 && db > -35);
    assert.ok(onset > 0, 'the caller spoke');
    assert.ok(Math.max(...remote.slice(Math.max(0, onset - 25), onset)) > -35, 'the AI was speaking then');
    let quiet = -1;
    for (let i = onset; i < remote.length - 15 && quiet < 0; i++)
      if (remote.slice(i, i + 15).every((db) => db < -45)) quiet = i;
    assert.ok(quiet >= 0, 'the AI went quiet');
    const ms = (quiet - onset) * 20;
    console.log(`browser: AI audio stopped ${ms} ms after the caller began speaking`);
    // From the caller's first sound ("S..."), so this includes the VAD's onset lag, the network
    // and both jitter buffers: a bound on what a person hears, not the server's own figure.
    assert.ok(ms <= lat.onset_lag_ms + 500, `the browser heard the AI stop ${ms} ms after the caller began (onset lag ${lat.onset_lag_ms} ms)`);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
