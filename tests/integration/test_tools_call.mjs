// Tools during real calls (`tingshuo call`, the C WebRTC client): the LLM
// is the OpenAI chat fixture scripted to call tools, the tools are webhooks
// on a fixture receiver that checks their signatures, and an MCP server
// fixture; TTS is flite, so what the caller hears is real speech.
//   - a webhook's answer is spoken, what the model said before the call
//     first; the webhook got a signed request with the call's id and the
//     arguments, and the model got the result in its own format;
//   - a slow tool: the tool's say_while_running phrase is said while it
//     runs, before its result;
//   - a tool that times out, and one that answers 500: the model is told,
//     and the caller hears the model's answer;
//   - end_call: a goodbye, then the call ends;
//   - the caller speaking while a tool runs: nothing of that reply is
//     spoken after the interruption, the next turn is answered, and the
//     tool's call and result are in the history the model gets next;
//   - an MCP server's tool, discovered at start, called like the others.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, tempDir, speechWav } from '../lib/harness.mjs';
import { placeCall } from '../lib/call.mjs';
import { startFixture } from '../fixtures/services/fixture.mjs';
import { startToolFixture } from '../fixtures/tools/start.mjs';

const SECRET = 'whsec-test-0123456789abcdef';
const FILLER = 'One moment, let me look that up.';
const ctx = {};

function toolsFile(hook) {
  const order = { type: 'object', properties: { order_id: { type: 'string' } }, required: ['order_id'] };
  const webhook = (mode, extra = {}) => ({ url: `${hook.base}/hook/${mode}`, headers: { 'X-Api-Key': { env: 'SHOP_KEY' } }, ...extra });
  const tools = [
    { name: 'get_order_status', description: 'Look up an order by its number.', parameters: order, webhook: webhook('ok') },
    { name: 'check_stock', description: 'Check the stock of an item.', parameters: order,
      webhook: webhook('slow?ms=2500'), say_while_running: FILLER },
    { name: 'lookup_hang', description: 'A tool that never answers.', parameters: order, webhook: webhook('hang', { timeout_ms: 600 }) },
    { name: 'lookup_down', description: 'A tool whose service fails.', parameters: order, webhook: webhook('500') },
    { builtin: 'end_call' },
    { builtin: 'get_time' },
  ];
  const path = join(ctx.dir, 'tools.json');
  writeFileSync(path, JSON.stringify({ tools }, null, 2));
  return path;
}

// The chat fixture's next request calls `calls`; the answer after the results is `reply`.
const script = (calls, { text, reply = 'Your order {order_id} has {status}.' } = {}) =>
  ctx.llm.script({ reset: true, toolCalls: calls, toolText: text, toolReply: reply });

async function call(wav = ctx.ask) {
  const ev = placeCall(ctx.srv.url, wav, { timeoutS: 40 });
  const code = await ev.done;
  assert.equal(code, 0, ev.dump());
  return ev;
}

const events = (ev, type) => ev.lines.map((l) => /\] (\w+): (\{.*\})$/.exec(l.line))
  .filter((m) => m && m[1] === type).map((m) => JSON.parse(m[2]));
const chats = async () => (await ctx.llm.log()).filter((e) => e.service === 'openai-chat');

before(async () => {
  ctx.dir = tempDir('tingshuo-tools-');
  ctx.ask = speechWav(ctx.dir, 'ask', 'Where is my order?', { before: 0.5, after: 6 });
  const again = speechWav(ctx.dir, 'again', 'Never mind, what time is it?', { before: 0, after: 6 });
  ctx.twice = join(ctx.dir, 'twice.wav');
  // The second question comes 2 s into the first's tool run (the endpoint is 0.6 s).
  const first = speechWav(ctx.dir, 'first', 'Where is my order?', { before: 0.5, after: 2.6 });
  execFileSync('sox', [first, again, ctx.twice]);
  ctx.llm = await startFixture();
  ctx.hook = await startToolFixture('webhook.mjs', SECRET);
  ctx.mcp = await startToolFixture('mcp.mjs');
  ctx.srv = await startServer({
    args: ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0',
      '--asr', 'scripted', '--asr-prompt', 'where is my order 42|never mind what time is it',
      '--llm', 'openai', '--llm-base-url', ctx.llm.v1, '--llm-model', 'fixture-model',
      '--tts', 'flite', '--tools-file', toolsFile(ctx.hook), '--mcp-servers', `${ctx.mcp.base}/mcp`],
    env: { OPENAI_API_KEY: 'sk-fixture-key-0123456789', SHOP_KEY: 'shop-key-42', TINGSHUO_TOOLS_SECRET: SECRET },
  });
});

after(async () => {
  try {
    if (ctx.srv) await ctx.srv.stop(); // status 0: under the sanitizer build, no leak
  } finally {
    await Promise.all([ctx.llm, ctx.hook, ctx.mcp].filter(Boolean).map((f) => f.stop()));
    rmSync(ctx.dir, { recursive: true, force: true });
  }
});

test("a webhook's answer is spoken; the request was signed and the model got the result", async () => {
  await ctx.hook.post('/_fixture/reset');
  await script([{ name: 'get_order_status', arguments: { order_id: '42' } }], { text: 'Let me check that.' });
  const ev = await call();
  const [tc] = events(ev, 'tool_call'), [tr] = events(ev, 'tool_result');
  assert.equal(tc?.tool, 'get_order_status', ev.dump());
  assert.deepEqual(tc.arguments, { order_id: '42' });
  assert.equal(tr.is_error, false, ev.dump());
  assert.equal(tr.result.status, 'shipped');
  assert.deepEqual(ev.replies.map((r) => r.text), ['Let me check that. Your order 42 has shipped.']);

  const [hit] = await ctx.hook.get('/_fixture/log');
  assert.equal(hit.verified, true, 'the signature verifies with the shared secret');
  assert.equal(hit.headers['x-api-key'], 'shop-key-42');
  assert.equal(hit.body.call_id, ev.id);
  assert.equal(hit.body.tool, 'get_order_status');
  assert.equal(hit.body.tool_call_id, tc.tool_call_id);
  assert.deepEqual(hit.body.arguments, { order_id: '42' });

  const [first, second] = await chats();
  assert.ok(first.request.tools.some((t) => t.function?.name === 'get_order_status'), 'tools offered');
  assert.ok(first.request.tools.some((t) => t.function?.name === 'end_call'));
  const msgs = second.request.messages;
  const asked = msgs.findLast((m) => m.role === 'assistant');
  assert.equal(asked.tool_calls[0].id, tc.tool_call_id);
  const result = msgs.at(-1);
  assert.equal(result.role, 'tool');
  assert.equal(result.tool_call_id, tc.tool_call_id);
  assert.match(result.content, /shipped/);
});

test("a slow tool: its phrase is said while it runs, before its result", async () => {
  await script([{ name: 'check_stock', arguments: { order_id: '7' } }], { reply: 'Item {order_id} is {status}.' });
  const ev = await call();
  const filler = ev.lines.findIndex((l) => l.line.includes(`reply_partial: "${FILLER}"`));
  const result = ev.lines.findIndex((l) => / tool_result: /.test(l.line));
  assert.ok(filler >= 0, `the filler was said:\n${ev.dump()}`);
  assert.ok(result > filler, 'before the result came');
  assert.match(ev.replies.at(-1).text, /Item 7 is shipped\./);
});

test('a tool that times out and one that fails: the model is told, the caller hears its answer', async () => {
  await script([{ name: 'lookup_hang', arguments: { order_id: '1' } }, { name: 'lookup_down', arguments: { order_id: '2' } }],
    { reply: 'Sorry, I could not look that up: {result}' });
  const ev = await call();
  const results = events(ev, 'tool_result');
  assert.equal(results.length, 2, ev.dump());
  assert.ok(results.every((r) => r.is_error), JSON.stringify(results));
  const msgs = (await chats())[1].request.messages.filter((m) => m.role === 'tool');
  assert.equal(msgs.length, 2, 'both results went back to the model');
  assert.ok(msgs.every((m) => /error/i.test(m.content)), JSON.stringify(msgs));
  assert.match(ev.replies.at(-1).text, /^Sorry, I could not look that up/);
});

test('end_call: a goodbye, then the call ends', async () => {
  await script([{ name: 'end_call', arguments: {} }]);
  const ev = await call();
  assert.deepEqual(ev.ends, ['goodbye'], ev.dump());
  assert.equal(ev.replies.length, 1);
  assert.match(ev.replies[0].text, /goodbye/i);
  assert.equal((await chats()).length, 1, 'no second request: the call is over');
});

test('the caller speaks while a tool runs: the next turn is answered with the tool round in history', async () => {
  await ctx.llm.script({ reset: true, toolCalls: [{ name: 'check_stock', arguments: { order_id: '9' } }],
    toolReply: 'unused', reply: 'It is noon.' });
  const ev = await call(ctx.twice);
  const finals = ev.finals.map((f) => f.text);
  assert.deepEqual(finals, ['where is my order 42', 'never mind what time is it'], ev.dump());
  assert.equal(ev.replies.at(-1).text, 'It is noon.');
  assert.ok(!ev.replies.some((r) => /unused/.test(r.text)), 'the left-behind round is not answered');
  const last = (await chats()).at(-1).request.messages;
  const i = last.findIndex((m) => m.role === 'assistant' && m.tool_calls);
  assert.ok(i >= 0, `the round is in the history: ${JSON.stringify(last)}`);
  assert.equal(last[i + 1].role, 'tool', 'its result right after it');
  assert.equal(last.at(-1).role, 'user');
  assert.match(last.at(-1).content, /never mind/);
});

test("an MCP server's tool is offered and called like the others", async () => {
  await script([{ name: 'echo', arguments: { text: 'from mcp' } }], { reply: 'The server said {result}.' });
  const ev = await call();
  const [tr] = events(ev, 'tool_result');
  assert.equal(tr?.tool, 'echo', ev.dump());
  assert.equal(tr.is_error, false, JSON.stringify(tr));
  assert.match(ev.replies.at(-1).text, /from mcp/);
});

test('with the Anthropic backend: the same round, in its own wire format', async () => {
  const srv = await startServer({
    args: ['--agent', 'voice', '--idle-prompt-ms', '0', '--idle-hangup-ms', '0',
      '--asr', 'scripted', '--asr-prompt', 'where is my order 42',
      '--llm', 'anthropic', '--llm-base-url', ctx.llm.v1, '--llm-model', 'fixture-model',
      '--tts', 'tone', '--tools-file', join(ctx.dir, 'tools.json')],
    env: { ANTHROPIC_API_KEY: 'sk-ant-fixture-0123456789', SHOP_KEY: 'shop-key-42', TINGSHUO_TOOLS_SECRET: SECRET },
  });
  try {
    await script([{ name: 'get_order_status', arguments: { order_id: '42' } }], { text: 'Let me check that.' });
    const ev = placeCall(srv.url, ctx.ask, { timeoutS: 40 });
    assert.equal(await ev.done, 0, ev.dump());
    assert.deepEqual(ev.replies.map((r) => r.text), ['Let me check that. Your order 42 has shipped.'], ev.dump());
    const [, second] = (await ctx.llm.log()).filter((e) => e.service === 'anthropic');
    const msgs = second.request.messages;
    const use = msgs.at(-2).content.find((b) => b.type === 'tool_use');
    assert.deepEqual(use?.input, { order_id: '42' }, JSON.stringify(msgs));
    const result = msgs.at(-1).content.find((b) => b.type === 'tool_result');
    assert.equal(result?.tool_use_id, use.id);
    assert.match(JSON.stringify(result.content), /shipped/);
  } finally {
    await srv.stop();
  }
});
