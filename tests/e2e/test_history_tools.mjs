// A call's tool calls in its record. The C client calls a voice agent whose
// LLM is the chat fixture scripted to call two tools at once (a webhook that
// answers, one whose service fails), on the fixture webhook receiver. The
// history API then has both calls on the caller's turn, in the order the
// model made them, with their arguments, results, errors and times; the list
// counts them; and the history page shows them in the turn as small cards,
// in English and in Chinese.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, run, tempDir, speechWav, launchBrowser, openPage } from '../lib/harness.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';
import { startToolFixture } from '../fixtures/tools/start.mjs';

const SECRET = 'whsec-test-0123456789abcdef';
const ctx = {};

function toolsFile(hook) {
  const order = { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] };
  const tools = [
    { name: 'get_order_status', description: 'Look up an order by its number.', parameters: order,
      webhook: { url: `${hook.base}/hook/ok` } },
    { name: 'lookup_down', description: 'A tool whose service fails.', parameters: order,
      webhook: { url: `${hook.base}/hook/500` } },
  ];
  const path = join(ctx.dir, 'tools.json');
  writeFileSync(path, JSON.stringify({ tools }));
  return path;
}

async function callAndWait() {
  const res = await run(['call', ctx.srv.url, '--play', ctx.wav, '--timeout', '40'], { timeoutMs: 60000 });
  assert.equal(res.code, 0, res.stdout + res.stderr);
  const id = /answer: call ([0-9a-f]+)/.exec(res.stdout)[1];
  for (const end = Date.now() + 15000; Date.now() < end;) {
    const r = await fetch(new URL(`/api/calls/${id}`, ctx.srv.url));
    if (r.ok) {
      const { call } = await r.json();
      if (call.ended_at) return call;
    }
    await new Promise((ok) => setTimeout(ok, 200));
  }
  assert.fail(`call ${id} was not stored as ended`);
}

before(async () => {
  ctx.dir = tempDir('tingshuo-history-tools-');
  ctx.wav = speechWav(ctx.dir, 'ask', 'Where is my order?', { before: 0.5, after: 5 });
  ctx.llm = await startFixture();
  ctx.hook = await startToolFixture('webhook.mjs', SECRET);
  ctx.srv = await startServer({
    args: ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0',
      '--asr', 'scripted', '--asr-prompt', 'where is my order 42',
      '--llm', 'openai', '--llm-base-url', ctx.llm.v1, '--llm-model', 'fixture-model',
      '--tts', 'flite', '--tools-file', toolsFile(ctx.hook)],
    env: { OPENAI_API_KEY: 'sk-fixture-key-0123456789', TINGSHUO_TOOLS_SECRET: SECRET },
  });
});

after(async () => {
  try {
    if (ctx.srv) await ctx.srv.stop();
  } finally {
    await Promise.all([ctx.llm, ctx.hook].filter(Boolean).map((f) => f.stop()));
    rmSync(ctx.dir, { recursive: true, force: true });
  }
});

test("a call's tool calls are in its record, its list entry and its page", { timeout: 180000 }, async () => {
  await ctx.llm.script({ reset: true, toolText: 'Let me check that.', toolReply: 'Here is what I found.',
    toolCalls: [{ name: 'get_order_status', arguments: { order_id: '42' } },
      { name: 'lookup_down', arguments: { order_id: '42' } }] });
  const call = await callAndWait();

  // The API: both calls on the caller's turn, in the order the model made them.
  assert.equal(call.tool_calls, 2, JSON.stringify(call));
  const turn = call.turns.find((x) => x.transcript === 'where is my order 42');
  assert.ok(turn, JSON.stringify(call.turns));
  assert.equal(turn.tool_call_count, 2);
  const [ok, down] = turn.tool_calls;
  assert.equal(ok.tool, 'get_order_status', JSON.stringify(turn.tool_calls));
  assert.match(ok.tool_call_id, /\S/);
  assert.deepEqual(ok.arguments, { order_id: '42' });
  assert.equal(ok.is_error, false);
  assert.equal(ok.result.status, 'shipped');
  assert.equal(ok.result.order_id, '42');
  assert.ok(Number.isInteger(ok.ms) && ok.ms >= 0, JSON.stringify(ok));
  assert.equal(down.tool, 'lookup_down');
  assert.equal(down.is_error, true, JSON.stringify(down));
  assert.notEqual(down.result, null);
  assert.ok(call.turns.filter((x) => x !== turn).every((x) => Array.isArray(x.tool_calls) && !x.tool_calls.length),
    'the greeting called nothing');
  assert.match(turn.reply, /Here is what I found/);

  const list = await (await fetch(new URL('/api/calls?limit=5', ctx.srv.url))).json();
  assert.equal(list.calls.find((c) => c.id === call.id)?.tool_calls, 2);

  // The page: the list's count, then the cards in the turn.
  const browser = await launchBrowser();
  try {
    const { page, assertNoErrors } = await openPage(browser, `${ctx.srv.url}history`, { permissions: [] });
    await page.evaluate(() => localStorage.setItem('tingshuo.lang', 'en'));
    await page.reload();
    const tag = `#calls a.row[data-id="${call.id}"] .tag.tools`;
    await page.waitForSelector(tag);
    assert.match(await page.textContent(tag), /^2 2 tool calls$/);

    await page.click(`#calls a.row[data-id="${call.id}"]`);
    await page.waitForSelector('#turns .msg.tool');
    assert.match(await page.textContent('#facts'), /Tool calls\s*2/);
    const cards = () => page.$$eval('#turns .msg.tool', (els) => els.map((e) => ({
      text: e.textContent, error: e.classList.contains('error'),
      turn: e.closest('.turn').querySelector('.msg.user')?.textContent ?? '',
      after: !!e.nextElementSibling?.matches('.msg.ai'),
    })));
    let shown = await cards();
    assert.equal(shown.length, 2, JSON.stringify(shown));
    assert.match(shown[0].text, /get_order_status\(\{"order_id":"42"\}\)/);
    assert.match(shown[0].text, /→ .*shipped.* · [\d,.]+ ms/);
    assert.equal(shown[0].error, false);
    assert.match(shown[0].turn, /where is my order 42/);
    assert.match(shown[1].text, /lookup_down/);
    assert.match(shown[1].text, /failed: /);
    assert.equal(shown[1].error, true);
    assert.equal(shown[1].after, true, 'the reply follows the cards');

    await page.click('#lang');
    await page.waitForFunction(() => document.querySelector('#facts').textContent.includes('工具调用'));
    shown = await cards();
    assert.match(shown[0].text, /^工具: get_order_status/);
    assert.match(shown[1].text, /失败: /);
    await page.click('#lang');
    assertNoErrors();
  } finally {
    await browser.close();
  }
});
