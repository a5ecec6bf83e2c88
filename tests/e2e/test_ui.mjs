// The call screen: it renders the conversation events the server sends
// (fed to the page's message handler, window.tingshuo.handle, as if they
// came over the socket), speaks English or Chinese, and sends the caller's
// settings as the offer's `config`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, waitForWs, wsLog, waitInCall, hangUp } from '../lib/harness.mjs';

const feed = (page, ...msgs) => page.evaluate((ms) => ms.forEach((m) => window.tingshuo.handle(m)), msgs);
const texts = (page, sel) => page.$$eval(sel, (els) => els.map((e) => e.textContent));
const cell = (page, turn, key) => page.textContent(`#latency-body tr[data-turn="${turn}"] td[data-key="${key}"]`);

test('the page renders the conversation, the turn state and latency; English and Chinese', async () => {
  const srv = await startServer();
  const browser = await launchBrowser();
  try {
    const { page, assertNoErrors } = await openPage(browser, srv.url, { contextOptions: { locale: 'en-US' } });
    await page.waitForSelector('#status[data-state="ready"]');
    assert.equal((await page.textContent('#call')).trim(), 'Call');
    assert.equal(await page.getAttribute('#conv', 'data-state'), 'idle');
    assert.equal(await page.isVisible('#empty'), true);

    await feed(page, { type: 'state', state: 'listening' });
    assert.equal(await page.getAttribute('#conv', 'data-state'), 'listening');
    assert.equal(await page.textContent('#conv-label'), 'Listening');

    // Partial hypotheses are drawn apart, and replaced by the final text.
    await feed(page, { type: 'state', state: 'user_speaking' }, { type: 'transcript', text: 'what is', final: false });
    assert.equal(await page.textContent('#conv-label'), 'You are speaking');
    assert.deepEqual(await texts(page, '.msg.user.partial .text'), ['what is']);
    assert.equal(await page.isVisible('#empty'), false);
    const partialStyle = await page.$eval('.msg.user.partial .text', (e) => getComputedStyle(e).fontStyle);
    assert.equal(partialStyle, 'italic');
    await feed(page, { type: 'transcript', text: 'what is the weather', final: false });
    assert.deepEqual(await texts(page, '.msg.user .text'), ['what is the weather']);
    await feed(page, { type: 'transcript', text: 'What is the weather like?', final: true });
    assert.deepEqual(await texts(page, '.msg.user .text'), ['What is the weather like?']);
    assert.equal(await page.$$eval('.msg.user.partial', (els) => els.length), 0);
    assert.equal(await page.$eval('.msg.user .text', (e) => getComputedStyle(e).fontStyle), 'normal');

    // The reply grows sentence by sentence as it is spoken, then is final.
    await feed(page, { type: 'state', state: 'thinking' });
    assert.equal(await page.textContent('#conv-label'), 'Thinking…');
    await feed(page, { type: 'state', state: 'speaking' }, { type: 'reply_partial', text: 'It is sunny.' });
    assert.deepEqual(await texts(page, '.msg.ai.live .text'), ['It is sunny.']);
    await feed(page, { type: 'reply_partial', text: 'Twenty degrees.' });
    assert.deepEqual(await texts(page, '.msg.ai.live .text'), ['It is sunny. Twenty degrees.']);
    await feed(page, { type: 'reply', text: 'It is sunny. Twenty degrees.', interrupted: false });
    assert.equal(await page.$$eval('.msg.ai.live', (els) => els.length), 0);
    assert.deepEqual(await texts(page, '.msg.ai .text'), ['It is sunny. Twenty degrees.']);
    assert.equal(await page.$$eval('.msg.ai.interrupted', (els) => els.length), 0);

    // Latency, by stage.
    await feed(page, { type: 'latency', turn: 1, endpoint_ms: 400, asr_ms: 120, llm_first_token_ms: 210,
      llm_first_sentence_ms: 380, tts_first_audio_ms: 90, voice_to_voice_ms: 1010, overhead_ms: 20 });
    assert.equal(await cell(page, 1, 'endpoint_ms'), '400');
    assert.equal(await cell(page, 1, 'asr_ms'), '120');
    assert.equal(await cell(page, 1, 'llm_first_token_ms'), '210');
    assert.equal(await cell(page, 1, 'llm_first_sentence_ms'), '380');
    assert.equal(await cell(page, 1, 'tts_first_audio_ms'), '90');
    assert.equal(await cell(page, 1, 'overhead_ms'), '20');
    assert.equal(await cell(page, 1, 'voice_to_voice_ms'), '1010');
    assert.equal(await cell(page, 1, 'barge_in_ms'), '–');
    assert.match(await page.textContent('#latency summary'), /1010 ms/);
    assert.equal(await page.$$eval('#latency-bar span', (els) => els.length), 5);

    // An interrupted turn: the reply is marked, the barge-in time joins the turn's row.
    await feed(page,
      { type: 'transcript', text: 'And tomorrow?', final: true },
      { type: 'reply_partial', text: 'Tomorrow it will rain,' },
      { type: 'latency', turn: 2, endpoint_ms: 380, asr_ms: 100, voice_to_voice_ms: 890 },
      { type: 'reply', text: 'Tomorrow it will', interrupted: true },
      { type: 'latency', turn: 2, barge_in_ms: 160 });
    assert.deepEqual(await texts(page, '.msg.user .text'), ['What is the weather like?', 'And tomorrow?']);
    assert.deepEqual(await texts(page, '.msg.ai.interrupted .text'), ['Tomorrow it will']);
    assert.equal(await page.textContent('.msg.ai.interrupted .tag'), 'interrupted');
    assert.equal(await cell(page, 2, 'barge_in_ms'), '160');
    assert.equal(await cell(page, 2, 'voice_to_voice_ms'), '890');
    assert.equal(await cell(page, 2, 'llm_first_token_ms'), '–');
    assert.deepEqual(await page.$$eval('#latency-body tr', (rs) => rs.map((r) => r.dataset.turn)), ['2', '1']);
    // The transcript is announced; partial guesses are not.
    assert.equal(await page.getAttribute('#log', 'aria-live'), 'polite');

    // A reply that calls a tool: what was said before the call, the call's card (running, then
    // its result), then the rest of the reply below the card, each part shown once.
    await feed(page,
      { type: 'transcript', text: 'Where is order 42?', final: true },
      { type: 'reply_partial', text: 'Let me check that.' },
      { type: 'tool_call', turn: 3, tool: 'get_order_status', tool_call_id: 'call_1', arguments: { order_id: '42' } });
    assert.deepEqual(await texts(page, '.msg.tool.running .call'), ['get_order_status({"order_id":"42"})']);
    assert.match(await page.textContent('.msg.tool .result'), /running/);
    await feed(page,
      { type: 'tool_result', turn: 3, tool: 'get_order_status', tool_call_id: 'call_1', is_error: false,
        result: { status: 'shipped' }, ms: 180 },
      { type: 'reply_partial', text: 'Order 42 has shipped.' },
      { type: 'reply', text: 'Let me check that. Order 42 has shipped.', interrupted: false });
    assert.equal(await page.$$eval('.msg.tool.running', (els) => els.length), 0);
    assert.equal(await page.textContent('.msg.tool .result'), '→ {"status":"shipped"} · 180 ms');
    const tail = await page.$$eval('#log .msg', (els) => els.slice(-3).map((e) => [e.className, e.querySelector('.text, .call').textContent]));
    assert.deepEqual(tail, [['msg ai', 'Let me check that.'], ['msg tool', 'get_order_status({"order_id":"42"})'],
      ['msg ai', 'Order 42 has shipped.']]);
    await feed(page, { type: 'tool_call', turn: 4, tool: 'book', tool_call_id: 'call_2', arguments: {} },
      { type: 'tool_result', turn: 4, tool: 'book', tool_call_id: 'call_2', is_error: true,
        result: { error: 'The booking service did not answer in time.' }, ms: 3000 });
    assert.equal(await page.$$eval('.msg.tool.error', (els) => els.length), 1);
    assert.match(await page.textContent('.msg.tool.error .result'), /^failed: .*did not answer/);

    // Engine errors: a notice; the call (here: the page) goes on.
    await feed(page, { type: 'error', code: 'engine', message: 'llm: the service timed out' });
    assert.equal(await page.isVisible('#notice'), true);
    assert.equal(await page.textContent('#notice-text'), 'llm: the service timed out');
    assert.equal(await page.getAttribute('#status', 'data-state'), 'ready');
    await page.click('#notice-close');
    assert.equal(await page.isVisible('#notice'), false);

    // The server's view of the microphone level.
    await feed(page, { type: 'level', mic_db: -20 });
    assert.equal(await page.isVisible('#server-meter'), true);

    // Chinese, by the switch; it is remembered.
    await page.click('#lang');
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal((await page.textContent('#call')).trim(), '通话');
    assert.equal(await page.textContent('#conv-label'), '正在说话');
    assert.match(await page.textContent('#status'), /^就绪/);
    assert.equal(await page.textContent('.msg.ai.interrupted .tag'), '已打断');
    assert.equal(await page.textContent('#latency-head th[data-key="asr_ms"]'), '语音识别');
    assert.equal(await page.textContent('#lang'), 'English');
    await page.reload();
    await page.waitForSelector('#status[data-state="ready"]');
    assert.equal((await page.textContent('#call')).trim(), '通话');
    assert.equal(await page.textContent('#conv-label'), '未在通话');
    await page.click('#lang');
    assert.equal((await page.textContent('#call')).trim(), 'Call');
    assertNoErrors();

    // A Chinese browser gets the Chinese page from the start.
    const zh = await openPage(browser, srv.url, { contextOptions: { locale: 'zh-CN' } });
    await zh.page.waitForSelector('#status[data-state="ready"]');
    assert.equal((await zh.page.textContent('#hangup')).trim(), '挂断');
    assert.equal(await zh.page.textContent('#empty'), '点击“通话”，然后开始说话。');
    assert.match(await zh.page.textContent('#status'), /已连接到 tingshuo/);
    zh.assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
  }
});

test('settings are kept in the browser and sent as the offer config', async () => {
  const srv = await startServer({ args: ['--agent', 'echo'] });
  const browser = await launchBrowser();
  try {
    const { page, assertNoErrors } = await openPage(browser, srv.url, { recordWs: true, contextOptions: { locale: 'en-US' } });
    await page.waitForSelector('#status[data-state="ready"]');
    await page.click('#open-settings');
    assert.equal(await page.isVisible('#settings'), true);
    assert.equal(await page.textContent('#s-rate-out'), 'Server default');
    await page.selectOption('#s-language', 'zh');
    await page.fill('#s-voice', 'kal');
    await page.fill('#s-prompt', 'You are a patient tutor. 请说慢一点。');
    await page.fill('#s-greeting', 'Hello!');
    await page.fill('#s-rate', '150');
    assert.equal(await page.textContent('#s-rate-out'), '150%');
    await page.click('#s-done');
    assert.equal(await page.isVisible('#settings'), false);

    // They survive a reload.
    await page.reload();
    await page.waitForSelector('#status[data-state="ready"]');
    await page.click('#open-settings');
    assert.equal(await page.inputValue('#s-language'), 'zh');
    assert.equal(await page.inputValue('#s-voice'), 'kal');
    assert.equal(await page.inputValue('#s-greeting'), 'Hello!');
    assert.equal(await page.inputValue('#s-rate'), '150');
    await page.check('#s-nogreeting');
    assert.equal(await page.isDisabled('#s-greeting'), true);
    await page.keyboard.press('Escape');
    assert.equal(await page.isVisible('#settings'), false);

    await page.click('#call');
    const offer = await waitForWs(page, 'out', (m) => m.type === 'offer');
    assert.deepEqual(offer.config, { language: 'zh', voice: 'kal',
      system_prompt: 'You are a patient tutor. 请说慢一点。', greeting: '', rate: 150 });
    await waitInCall(page);
    assert.equal(await page.getAttribute('#conv', 'data-state'), 'connected');
    await hangUp(page);

    // Reset: nothing set, no config.
    await page.click('#open-settings');
    await page.click('#s-reset');
    assert.equal(await page.inputValue('#s-voice'), '');
    await page.click('#s-done');
    const before = (await wsLog(page, 'out')).length;
    await page.click('#call');
    const plain = await waitForWs(page, 'out', (m) => m.type === 'offer', { skip: before });
    assert.equal(plain.config, undefined);
    await waitInCall(page);
    await hangUp(page);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
  }
});
