// `tingshuo call`'s send-side impairment flags (--loss, --jitter, --gain,
// --offset-ms, --seed), used by the recognition consistency bench: values
// out of range are refused with a clear message before anything is sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { run, tempDir, speechWav } from '../lib/harness.mjs';

test('impairment flags out of range are refused', async () => {
  const dir = tempDir('tingshuo-impair-');
  try {
    const wav = speechWav(dir, 'hi', 'hello', { before: 0.1, after: 0.1 });
    const cases = [
      ['--loss', '60', /--loss: expected a number from 0 to 50, got "60"/],
      ['--jitter', '-1', /--jitter: expected a number from 0 to 200/],
      ['--gain', '0', /--gain: expected a number from 0.01 to 10/],
      ['--offset-ms', 'soon', /--offset-ms: expected a number from 0 to 1000, got "soon"/],
      ['--seed', '1.5e10', /--seed: expected a number from 0 to/],
    ];
    for (const [flag, value, message] of cases) {
      const r = await run(['call', 'ws://127.0.0.1:9/ws', '--play', wav, flag, value]);
      assert.equal(r.code, 2, `${flag} ${value}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
