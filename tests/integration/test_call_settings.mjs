// Per-call settings in the offer's `config`: each bad field is refused by
// name, no call starts, and the connection goes on; good settings start a
// call whose agent speaks in the chosen language.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, wsConnect } from '../lib/harness.mjs';

const OFFER = readFileSync(join(process.env.TS_SOURCE_DIR, 'tests/fixtures/sdp/chrome_offer.sdp'), 'utf8');

test('bad per-call settings are refused by name and start no call', async () => {
  const srv = await startServer({ args: ['--asr', 'scripted', '--llm', 'fixed', '--tts', 'tone'] });
  try {
    const c = await wsConnect(srv.wsUrl());
    await c.expect('hello');
    const bad = [
      [[1, 2], 'config must be an object'],
      [{ language: 7 }, 'config.language'],
      [{ language: 'zh; rm -rf' }, 'config.language'],
      [{ voice: 'x'.repeat(200) }, 'config.voice'],
      [{ system_prompt: 'p'.repeat(5000) }, 'config.system_prompt'],
      [{ greeting: false }, 'config.greeting'],
      [{ rate: 'fast' }, 'config.rate'],
      [{ rate: 1000 }, 'config.rate'],
    ];
    for (const [config, name] of bad) {
      c.send({ type: 'offer', sdp: OFFER, config });
      const m = await c.expect('error');
      assert.equal(m.code, 'bad_message', JSON.stringify(config));
      assert.ok(m.message.includes(name), `${m.message} names ${name}`);
    }
    assert.equal((await (await fetch(srv.url + 'healthz')).json()).calls, 0);

    c.send({ type: 'offer', sdp: OFFER, config: { language: 'zh', voice: 'cmn', rate: 120, greeting: '你好' } });
    const answer = await c.expect('answer');
    assert.match(answer.sdp, /a=ice-lite/);
    assert.equal((await (await fetch(srv.url + 'healthz')).json()).calls, 1);
    c.send({ type: 'hangup' });
    assert.equal((await c.expect('end')).reason, 'hangup');
    c.close();
  } finally {
    await srv.stop();
  }
});
