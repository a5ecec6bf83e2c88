// The history page, against calls really made in Chromium.
//
// A conversation with the embedded engines (the fake microphone asks the
// time) leaves a record; /history lists it first, and its page shows what
// the call page was told during the call: the caller's bubbles hold the
// final `transcript` texts, the AI's bubbles the `reply` texts, and the
// turn's latency waterfall is drawn from the `latency` event's figures.
// A call recorded with --record-calls on plays in the page's audio
// element. With an admin token the page asks for it, and shows the list
// once it is given. Screenshots of the list and of a call are kept in
// test-artifacts/ next to the binary under test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { BIN, startServer, launchBrowser, openPage, tempDir, speechWav, hangUp } from '../lib/harness.mjs';
import { VOICE_AGENT_ARGS, startRecordedCall, events, waitForEvent } from '../lib/voice.mjs';

const ARTIFACTS = join(dirname(BIN), 'test-artifacts');

// The API writes records through a queue: wait until the call is stored as ended.
async function waitStored(srv, id, timeoutMs = 15000, headers = {}) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(`${srv.url}api/calls/${id}`, { headers });
    if (res.ok) {
      const { call } = await res.json();
      if (call.ended_at) return call;
    }
    if (Date.now() > end) throw new Error(`call ${id} not stored as ended within ${timeoutMs} ms (last status ${res.status})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('a call is listed first, and its page shows what the call page was told', { timeout: 180000 }, async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'question', 'What time is it?', { before: 1.0, after: 14 });
  const srv = await startServer({ args: VOICE_AGENT_ARGS });
  const browser = await launchBrowser({ wav });
  try {
    const call = await startRecordedCall(browser, srv.url);
    await waitForEvent(call.page, (e) => e.type === 'transcript' && e.final && e.text.trim(), 30000);
    await waitForEvent(call.page, (e) => e.type === 'reply' && e.text, 30000);
    await waitForEvent(call.page, (e) => e.type === 'latency' && typeof e.voice_to_voice_ms === 'number', 10000);
    await hangUp(call.page);
    call.assertNoErrors();

    const id = (await events(call.page, 'answer'))[0].call_id;
    const finals = (await events(call.page, 'transcript')).filter((e) => e.final && e.text.trim()).map((e) => e.text);
    const replies = (await events(call.page, 'reply')).filter((e) => e.text).map((e) => e.text);
    const latency = (await events(call.page, 'latency')).filter((e) => typeof e.voice_to_voice_ms === 'number');
    console.log(`call ${id}: said ${JSON.stringify(finals)}, answered ${JSON.stringify(replies)}`);
    await waitStored(srv, id);
    mkdirSync(ARTIFACTS, { recursive: true });

    // The list: this call first, reached from the call page's link.
    const { page, assertNoErrors } = await openPage(browser, srv.url, { permissions: [] });
    await page.click('a[href="/history"]');
    await page.waitForSelector('#calls a.row');
    assert.equal(await page.getAttribute('#calls li:first-child a.row', 'data-id'), id, 'the newest call is listed first');
    assert.equal(await page.textContent('#calls li:first-child .c-preview .ptext'), finals[0], 'its preview is what was said first');
    await page.screenshot({ path: join(ARTIFACTS, 'history-list.png'), fullPage: true });

    // The call's page, through the list (History API: the URL changes, no reload).
    await page.click('#calls li:first-child a.row');
    await page.waitForSelector('#call:not([hidden]) .turn');
    assert.equal(new URL(page.url()).pathname, `/history/${id}`);

    const said = await page.$$eval('#turns .msg.user .text', (els) => els.map((e) => e.textContent));
    assert.deepEqual(said, finals, 'the caller bubbles are the final transcripts');
    const answered = await page.$$eval('#turns .msg.ai .text', (els) => els.map((e) => e.textContent));
    assert.deepEqual(answered, replies, 'the AI bubbles are the replies');

    // The waterfall of the turn that was asked: its bars have width, its
    // parts lie within voice to voice and the last ends where it ends (they
    // add up to it, or overlap inside the pause when the reply was made
    // there), and its total is the event's figure.
    const chart = await page.evaluate(() => {
      const turn = [...document.querySelectorAll('#turns .turn')].find((t) => t.querySelector('.msg.user'));
      const svg = turn && turn.querySelector('svg.wf');
      if (!svg) return null;
      const bars = [...svg.querySelectorAll('rect.bar')].map((r) => ({ key: r.dataset.key, x: r.getBBox().x, w: r.getBBox().width }));
      const total = svg.querySelector('g.row.total text.value').textContent;
      return { bars, total };
    });
    assert.ok(chart, 'the turn has a latency chart');
    const total = chart.bars.find((b) => b.key === 'voice_to_voice_ms');
    const parts = chart.bars.filter((b) => b.key !== 'voice_to_voice_ms');
    assert.ok(total && total.w > 0, `the voice-to-voice bar has width: ${JSON.stringify(chart.bars)}`);
    assert.ok(parts.length >= 2 && parts.every((b) => b.w > 0), `stage bars have width: ${JSON.stringify(chart.bars)}`);
    const end = Math.max(...parts.map((b) => b.x + b.w)), start = Math.min(...parts.map((b) => b.x));
    assert.ok(Math.abs(start - total.x) <= 1 && Math.abs(end - (total.x + total.w)) <= 2 * parts.length + 1,
      `the stages (${start}-${end} px) span voice to voice (${total.x}-${total.x + total.w} px)`);
    assert.ok(parts.every((b) => b.x >= total.x - 1 && b.x + b.w <= total.x + total.w + 2),
      `every stage lies within voice to voice: ${JSON.stringify(chart.bars)}`);
    const shown = Number(chart.total.replace(/[^0-9.]/g, '')), v2v = latency[0].voice_to_voice_ms;
    assert.ok(Math.abs(shown - v2v) <= 0.5, `the chart shows the turn's voice to voice (${chart.total}, event ${v2v})`);

    // A call without a recording says so and has no player.
    assert.equal(await page.locator('#recording audio').count(), 0);
    assert.ok((await page.textContent('#recording')).includes('not recorded'));
    await page.screenshot({ path: join(ARTIFACTS, 'history-call.png'), fullPage: true });

    // Back returns to the list, forward to the call.
    await page.goBack();
    await page.waitForSelector('#list-view:not([hidden]) #calls a.row');
    await page.goForward();
    await page.waitForSelector('#call-view:not([hidden]) #call:not([hidden])');

    // The same on a phone.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    await page.screenshot({ path: join(ARTIFACTS, 'history-call-phone.png'), fullPage: true });
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
  }
});

test('a recorded call plays on its page', { timeout: 120000 }, async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'hello', 'Hello, this call is recorded.', { before: 0.5, after: 1.5 });
  const srv = await startServer({ args: ['--agent', 'echo', '--record-calls', 'on'] });
  const browser = await launchBrowser({ wav });
  try {
    const { page, assertNoErrors } = await startRecordedCall(browser, srv.url);
    const id = (await events(page, 'answer'))[0].call_id;
    await page.waitForTimeout(4000);
    await hangUp(page);
    const stored = await waitStored(srv, id);
    assert.ok(stored.recording, 'the call has a recording');

    await page.goto(`${srv.url}history/${id}`);
    await page.waitForSelector('#recording audio');
    const media = await page.waitForFunction(() => {
      const a = document.querySelector('#recording audio');
      return a.readyState >= 1 && a.duration > 0 && { readyState: a.readyState, duration: a.duration };
    }, null, { timeout: 10000 }).then((h) => h.jsonValue());
    console.log(`recording: ${JSON.stringify(media)}, call ${stored.duration_s} s`);
    assert.ok(Number.isFinite(media.duration), `the player knows the length: ${media.duration}`);
    assert.ok(media.duration <= stored.duration_s + 2, `${media.duration} s recorded of a ${stored.duration_s} s call`);

    // Deleting it, after the confirmation, takes the call and its recording away.
    await page.click('#delete');
    await page.waitForSelector('#confirm[open]');
    await page.click('#confirm button[value="delete"]');
    await page.waitForSelector('#list-view:not([hidden])');
    assert.equal(new URL(page.url()).pathname, '/history');
    assert.match(await page.textContent('#toast'), /deleted/);
    assert.equal(await page.locator(`#calls a.row[data-id="${id}"]`).count(), 0, 'the list no longer has it');
    assert.equal((await fetch(`${srv.url}api/calls/${id}`)).status, 404);
    assert.equal((await fetch(`${srv.url}api/calls/${id}/recording`)).status, 404);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
  }
});

// With a token set, /history itself asks for it (a form the server serves),
// and the page asks again through its own form when the API answers 401
// later, here because the session cookie is gone.
test('with an admin token the page asks for it, then shows the list', { timeout: 60000 }, async () => {
  const token = randomBytes(16).toString('hex');
  const srv = await startServer({ env: { TINGSHUO_ADMIN_TOKEN: token } });
  const browser = await launchBrowser();
  try {
    const { page, context, errors } = await openPage(browser, `${srv.url}history`, { permissions: [] });
    const alert = () => page.textContent('[role="alert"]:not(:empty)');
    await page.waitForSelector('input[name="token"]');
    assert.equal(await page.locator('#list-view:not([hidden])').count(), 0, 'no list without the token');

    await page.fill('input[name="token"]', token + 'x');
    await Promise.all([page.waitForResponse((r) => r.url().endsWith('/api/login')), page.press('input[name="token"]', 'Enter')]);
    await page.waitForSelector('[role="alert"]');
    assert.ok(await alert(), 'a wrong token is refused');
    await page.fill('input[name="token"]', token);
    await Promise.all([page.waitForURL(`${srv.url}history`), page.press('input[name="token"]', 'Enter')]);
    await page.waitForSelector('#list-view:not([hidden]) #list-state[data-kind="empty"]:not([hidden])');

    // The session ends under the page: its next request is answered 401.
    await context.clearCookies();
    await page.fill('#f-q', 'hello');
    await page.waitForSelector('#login-view:not([hidden])');
    assert.ok(await page.isHidden('#list-view'));
    assert.equal(await page.evaluate(() => document.activeElement.id), 'login-token', 'the token field has focus');
    await page.fill('#login-token', token + 'x');
    await page.press('#login-token', 'Enter');
    await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
    assert.ok(await page.isVisible('#login-view'), 'a wrong token is refused');
    await page.fill('#login-token', token);
    await page.click('#login-form button[type="submit"]');
    await page.waitForSelector('#list-view:not([hidden]) #list-state[data-kind="empty"]:not([hidden])');
    assert.equal(new URL(page.url()).searchParams.get('q'), 'hello', 'the search survived the sign-in');

    // Signing out: the page asks again, and so does the server on a reload.
    await page.click('#logout');
    await page.waitForSelector('#login-view:not([hidden])');
    await page.reload();
    await page.waitForSelector('input[name="token"]');
    assert.equal(await page.locator('#list-view:not([hidden])').count(), 0);

    // Only the refused requests may have been reported, as the browser does for any 401.
    const other = errors.filter((e) => !/status of 401/.test(e));
    assert.deepEqual(other, [], `the page reported errors:\n${other.join('\n')}`);
  } finally {
    await browser.close();
    await srv.stop();
  }
});
