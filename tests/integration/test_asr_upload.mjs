// What the Whisper-compatible path uploads for one utterance (docs/asr.md):
// a call speaks a sentence with a second of silence before it and 2.5 s
// after; the ASR service fixture receives the WAV, and its level per 20 ms
// frame shows the upload starts with the pre-roll (a little of the quiet
// before the speech, not the whole second) and ends with at most a short
// tail of the silence, not the endpoint's 600 ms.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, run, tempDir, speechWav, readWav } from '../lib/harness.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

// Frames of `levels` (dB) from the start (or the end) quieter than 40 dB under the loudest.
function quietRun(levels, fromEnd) {
  const peak = Math.max(...levels);
  const seq = fromEnd ? [...levels].reverse() : levels;
  const n = seq.findIndex((l) => l > peak - 40);
  return n < 0 ? levels.length : n;
}

test('the uploaded utterance starts with the pre-roll and ends without the endpoint silence', async () => {
  const dir = tempDir('tingshuo-upload-');
  const fx = await startFixture();
  const srv = await startServer({
    args: ['--asr', 'openai', '--asr-base-url', fx.v1, '--llm', 'fixed', '--tts', 'tone',
      '--greeting', '', '--idle-prompt-ms', '0'],
    env: { OPENAI_API_KEY: 'sk-fixture' },
  });
  try {
    await fx.script({ reset: true, transcript: 'my order number is four five two one' });
    const wav = speechWav(dir, 'order', 'my order number is four five two one', { before: 1.0, after: 2.5 });
    const speech = readWav(join(dir, 'order.raw.wav'));
    const r = await run(['call', srv.url, '--play', wav, '--timeout', '30'], { timeoutMs: 40000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /transcript \(final\): "my order number is four five two one"/);
    const uploads = (await fx.log()).filter((e) => e.service === 'openai-transcriptions');
    assert.equal(uploads.length, 1, 'one utterance, one upload');
    const w = uploads[0].wav;
    assert.ok(w && Array.isArray(w.levels), 'the fixture reports the upload\'s levels');
    assert.equal(w.rate, 16000);
    const seconds = w.samples / w.rate, lead = quietRun(w.levels, false) * 20,
      trail = quietRun(w.levels, true) * 20, spoken = speech.samples.length / speech.rate;
    console.log(`upload: ${seconds.toFixed(2)} s for ${spoken.toFixed(2)} s of synthesised speech; ` +
      `leading quiet ${lead} ms, trailing quiet ${trail} ms`);
    // The pre-roll: some quiet before the first sound, never the whole second of it.
    assert.ok(lead >= 40 && lead <= 400, `leading quiet ${lead} ms`);
    // At most the 200 ms tail (and a frame or two of decay), not 600 ms of endpoint.
    assert.ok(trail <= 300, `trailing quiet ${trail} ms`);
    assert.ok(seconds < spoken + 0.9, `${seconds} s uploaded for ${spoken} s of speech`);
  } finally {
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
