// The history page shows what a call cost and used. The C client calls a
// voice agent whose services are the fixture (which reports a scripted token
// usage), with prices set; the list then shows the call's cost, and the
// call's page its estimated cost, its usage and each turn's, all as the API
// has them, in English and in Chinese. A call made without prices says it
// was not priced rather than showing a cost of 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { startServer, run, tempDir, speechWav, launchBrowser, openPage } from '../lib/harness.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';

const GREETING = 'Hello, this is the test line.';
const ARGS = ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0', '--greeting', GREETING];
const ENV = { OPENAI_API_KEY: 'sk-fixture-key-0123456789' };
const PRICES = ['--price-llm-input', '2.5', '--price-llm-cached', '1.25', '--price-llm-output', '10',
  '--price-tts', '15', '--price-asr', '0.006', '--price-currency', 'EUR'];

const services = (fx) => ['--asr', 'openai', '--asr-base-url', fx.v1, '--llm', 'openai', '--llm-base-url', fx.v1,
  '--llm-model', 'fixture-model', '--tts', 'openai', '--tts-base-url', fx.v1];

async function callAndWait(srv, dir) {
  const wav = speechWav(dir, 'q', 'What is the weather like today?', { before: 3.0, after: 4.0 });
  const res = await run(['call', srv.url, '--play', wav, '--timeout', '40'], { timeoutMs: 60000 });
  assert.equal(res.code, 0, res.stdout + res.stderr);
  const id = /answer: call ([0-9a-f]+)/.exec(res.stdout)[1];
  for (const end = Date.now() + 15000; Date.now() < end;) {
    const r = await fetch(new URL(`/api/calls/${id}`, srv.url));
    if (r.ok) {
      const { call } = await r.json();
      if (call.ended_at) return call;
    }
    await new Promise((ok) => setTimeout(ok, 200));
  }
  assert.fail(`call ${id} was not stored as ended`);
}

test('the page shows a call\'s cost, its usage and each turn\'s', { timeout: 180000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: 'what is the weather like', reply: 'It is sunny today.',
    usage: { prompt: 1500, cached: 1024, output: 12 } });
  const dir = tempDir('tingshuo-cost-page-');
  const srv = await startServer({ args: [...ARGS, ...services(fx), ...PRICES], env: ENV });
  const browser = await launchBrowser();
  try {
    const call = await callAndWait(srv, dir);
    assert.ok(call.cost > 0, JSON.stringify(call));
    const { page, assertNoErrors } = await openPage(browser, `${srv.url}history`, { permissions: [] });
    await page.evaluate(() => localStorage.setItem('tingshuo.lang', 'en'));
    await page.reload();
    await page.waitForSelector('#calls a.row');
    // The list: the cost in euros, as the API has it (to two significant digits when small).
    const shown = await page.textContent(`#calls a.row[data-id="${call.id}"] .c-cost`);
    const digits = (s) => Number(s.replace(/[^0-9.]/g, ''));
    assert.match(shown, /€/, shown);
    assert.ok(Math.abs(digits(shown) - call.cost) <= call.cost * 0.05, `list shows ${shown}, cost ${call.cost}`);

    await page.click(`#calls a.row[data-id="${call.id}"]`);
    await page.waitForSelector('#call:not([hidden]) .turn');
    const facts = await page.textContent('#facts');
    assert.match(facts, /Estimated cost/);
    assert.match(facts, /1,500 in · 1,024 cached · 12 out/, facts);
    assert.match(facts, new RegExp(`${call.usage.tts_chars} chars`), facts);
    assert.match(facts, /s of audio/);
    const lines = await page.$$eval('#turns .turn', (turns) => turns.map((t) => t.querySelector('.turn-usage')?.textContent ?? ''));
    assert.match(lines[0], /TTS 1st audio/, 'the greeting shows its time to first audio');
    assert.doesNotMatch(lines[0], /LLM/, 'the greeting used no LLM');
    assert.match(lines[1], /LLM\s*1,500 in/, lines[1]);
    assert.equal(await page.locator('#turns .turn').first().locator('svg.wf').count(), 0,
      'a reply alone has no waterfall');

    await page.click('#lang');
    await page.waitForFunction(() => document.querySelector('#facts').textContent.includes('估算费用'));
    assert.match(await page.textContent('#facts'), /输入 1,500/);
    await page.click('#lang');
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a call made without prices says it was not priced', { timeout: 180000 }, async () => {
  const fx = await startFixture();
  await fx.script({ reset: true, transcript: 'what is the weather like', reply: 'It is sunny today.' });
  const dir = tempDir('tingshuo-cost-page-');
  const srv = await startServer({ args: [...ARGS, ...services(fx)], env: ENV });
  const browser = await launchBrowser();
  try {
    const call = await callAndWait(srv, dir);
    assert.equal(call.cost, null);
    const { page, assertNoErrors } = await openPage(browser, `${srv.url}history/${call.id}`, { permissions: [] });
    await page.evaluate(() => localStorage.setItem('tingshuo.lang', 'en'));
    await page.reload();
    await page.waitForSelector('#call:not([hidden]) .turn');
    assert.match(await page.textContent('#facts'), /Estimated cost\s*not priced/);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
