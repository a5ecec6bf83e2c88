// A conversation with the embedded engines: Chromium's microphone asks the
// time (speech made by flite, with silence around it); pocketsphinx hears
// it, the local assistant answers, flite speaks. The page shows the
// transcript, the reply tells the time, and what the browser heard of the
// reply, recognised again by pocketsphinx, is the reply's text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, tempDir, speechWav, envelope, hangUp } from '../lib/harness.mjs';
import { VOICE_AGENT_ARGS, startRecordedCall, events, waitForEvent, stopDuplexRecorder, writeWav16k,
  transcribe, wordOverlap } from '../lib/voice.mjs';

const HOURS = ['twelve', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine', 'ten', 'eleven'];

// The hour as a reply may say it, a minute either side of now.
function hourWords() {
  const out = new Set();
  for (const d of [-1, 0, 1]) {
    const t = new Date(Date.now() + d * 60000), h = t.getHours();
    out.add(String(h)); out.add(String(h % 12 || 12)); out.add(HOURS[h % 12]);
    if (t.getMinutes() >= 30) out.add(HOURS[(h + 1) % 12]); // "twenty to four"
    out.add(String(h).padStart(2, '0'));
  }
  if (new Date().getHours() === 12 || new Date().getHours() === 0) { out.add('noon'); out.add('midnight'); }
  return [...out];
}

test('asking the time gets the time, spoken', { timeout: 180000 }, async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'question', 'What time is it?', { before: 1.0, after: 14 });
  const srv = await startServer({ args: VOICE_AGENT_ARGS });
  const browser = await launchBrowser({ wav });
  try {
    const { page, assertNoErrors } = await startRecordedCall(browser, srv.url);

    const final = await waitForEvent(page, (e) => e.type === 'transcript' && e.final, 30000);
    console.log(`transcript: "${final.text}"`);
    assert.match(final.text, /time/i);
    const reply = await waitForEvent(page, (e) => e.type === 'reply', 30000);
    console.log(`reply: "${reply.text}"`);
    assert.equal(reply.interrupted, false);
    const said = reply.text.toLowerCase();
    assert.ok(hourWords().some((w) => new RegExp(`\\b${w}\\b`).test(said)), `the reply tells the hour: ${reply.text}`);
    await page.waitForTimeout(1000);
    const rec = await stopDuplexRecorder(page);

    // The page shows what was said and what was answered.
    const body = await page.textContent('body');
    assert.ok(body.toLowerCase().includes(final.text.toLowerCase()), 'the transcript is on the page');

    const lat = (await events(page, 'latency')).find((e) => e.turn >= 1);
    assert.ok(lat, 'a latency event for the turn');
    for (const f of ['endpoint_ms', 'asr_ms', 'llm_first_token_ms', 'llm_first_sentence_ms',
      'tts_first_audio_ms', 'voice_to_voice_ms', 'overhead_ms'])
      assert.equal(typeof lat[f], 'number', `latency has ${f}`);
    console.log('latency', JSON.stringify(lat));

    // What the browser heard of the reply is the reply.
    const env = envelope(rec.remote, rec.rate);
    assert.ok(Math.max(...env) > -30, 'reply audio reached the browser');
    const heard = transcribe(writeWav16k(dir, 'reply', rec.remote, rec.rate));
    const overlap = wordOverlap(reply.text, heard);
    console.log(`pocketsphinx heard: "${heard}" (word overlap ${overlap.toFixed(2)})`);
    assert.ok(overlap >= 0.4, `the audio says the reply (overlap ${overlap.toFixed(2)})`);

    await hangUp(page);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
  }
});
