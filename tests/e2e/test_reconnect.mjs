// A call survives network trouble. Chromium calls the echo agent with a
// spoken sentence; then (a) the page restarts ICE, as it does when ICE
// fails, and (b) the page's WebSocket drops and the page reconnects and
// resumes the call. After each, the call has the same id, media still
// flows both ways, and what comes back is still the echo of the sentence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, tempDir, speechWav, wsLog, waitForWs, rtpCounts,
  measureEcho } from '../lib/harness.mjs';

const ufragOf = (sdp) => /^a=ice-ufrag:(\S+)/m.exec(sdp)[1];
const pwdOf = (sdp) => /^a=ice-pwd:(\S+)/m.exec(sdp)[1];

async function healthCalls(srv) {
  return (await (await fetch(srv.url + 'healthz')).json()).calls;
}

// Media moves in both directions over the next `ms`: at least 60% of the
// 50 packets a second each way.
async function assertMediaFlows(page, ms, what) {
  const a = await rtpCounts(page);
  await page.waitForTimeout(ms);
  const b = await rtpCounts(page);
  const want = 0.6 * 50 * ms / 1000;
  const got = { in: b.packetsReceived - a.packetsReceived, out: b.packetsSent - a.packetsSent };
  assert.ok(got.in > want && b.received > a.received, `${what}: ${got.in} packets received in ${ms} ms`);
  assert.ok(got.out > want && b.sent > a.sent, `${what}: ${got.out} packets sent in ${ms} ms`);
}

async function assertEcho(page, wav, what) {
  const { corr, peak } = await measureEcho(page, wav, 8000);
  console.log(`${what}: echo envelope correlation ${corr.toFixed(3)}, peak ${peak.toFixed(3)}`);
  assert.ok(peak > 0.05, `${what}: the echo is audible (peak ${peak.toFixed(3)})`);
  assert.ok(corr > 0.6, `${what}: the echo matches the sentence (correlation ${corr.toFixed(3)})`);
}

test('a call survives an ICE restart and a dropped WebSocket', async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'sentence', 'The quick brown fox jumps over the lazy dog.', { before: 0.5, after: 3 });
  const srv = await startServer({ args: ['--agent', 'echo'] });
  const browser = await launchBrowser({ wav });
  try {
    const { page, assertNoErrors } = await openPage(browser, srv.url, { recordWs: true });
    await page.waitForSelector('#status[data-state="ready"]');
    await page.click('#call');
    await page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
    const first = await waitForWs(page, 'out', (m) => m.type === 'offer');
    const callId = (await waitForWs(page, 'in', (m) => m.type === 'answer')).call_id;
    assert.equal(await page.evaluate(() => window.tingshuo.callId), callId);
    await assertMediaFlows(page, 1500, 'before');

    // (a) ICE restart: a new offer on the same call with new credentials.
    let sentBefore = (await wsLog(page, 'out')).length, gotBefore = (await wsLog(page, 'in')).length;
    await page.evaluate(() => window.tingshuo.restartIce());
    const restart = await waitForWs(page, 'out', (m) => m.type === 'offer', { skip: sentBefore });
    assert.equal(restart.call_id, callId);
    assert.equal(restart.config, undefined, 'settings go with the first offer only');
    assert.notEqual(ufragOf(restart.sdp), ufragOf(first.sdp));
    assert.notEqual(pwdOf(restart.sdp), pwdOf(first.sdp));
    const answer = await waitForWs(page, 'in', (m) => m.type === 'answer' || m.type === 'error', { skip: gotBefore });
    assert.equal(answer.type, 'answer', `the restart was answered: ${JSON.stringify(answer)}`);
    assert.equal(answer.call_id, callId);
    const firstAnswer = await waitForWs(page, 'in', (m) => m.type === 'answer');
    assert.notEqual(ufragOf(answer.sdp), ufragOf(firstAnswer.sdp), 'the server took new credentials too');
    await page.waitForFunction(() => !window.tingshuo.restarting && window.tingshuo.pc.connectionState === 'connected');
    await page.waitForSelector('#status[data-state="incall"]');
    // The browser now checks with the new credentials; the path must carry
    // media through a consent check or two (one every ~5 s, RFC 7675),
    await assertMediaFlows(page, 6000, 'after the ICE restart');
    // and over the path the new credentials opened.
    const transport = await page.evaluate(async () => {
      let t = null;
      (await window.tingshuo.pc.getStats()).forEach((s) => { if (s.type === 'transport') t = s; });
      return t;
    });
    if (transport.iceLocalUsernameFragment !== undefined)
      assert.equal(transport.iceLocalUsernameFragment, ufragOf(restart.sdp));
    assert.ok(transport.selectedCandidatePairChanges >= 2, `selected pair changes: ${transport.selectedCandidatePairChanges}`);
    assert.equal(await page.evaluate(() => window.tingshuo.pc.iceConnectionState), 'connected');
    await assertEcho(page, wav, 'after the ICE restart');

    // (b) the WebSocket drops: the page reconnects and resumes the call.
    sentBefore = (await wsLog(page, 'out')).length;
    gotBefore = (await wsLog(page, 'in')).length;
    await page.evaluate(() => window.tingshuo.ws.close());
    const resume = await waitForWs(page, 'out', (m) => m.type === 'resume', { skip: sentBefore });
    assert.equal(resume.call_id, callId);
    const resumed = await waitForWs(page, 'in', (m) => m.type === 'resumed' || m.type === 'error', { skip: gotBefore });
    assert.equal(resumed.type, 'resumed', `the call was resumed: ${JSON.stringify(resumed)}`);
    assert.equal(resumed.call_id, callId);
    await page.waitForSelector('#status[data-state="incall"]');
    assert.equal(await page.evaluate(() => window.tingshuo.callId), callId);
    assert.equal(await page.evaluate(() => window.__sockets.length), 2);
    assert.equal(await healthCalls(srv), 1);
    await assertMediaFlows(page, 1500, 'after the resume');
    await assertEcho(page, wav, 'after the resume');

    // (a) then (b) together: an ICE restart whose offer goes out while the
    // socket is down is sent after the resume.
    sentBefore = (await wsLog(page, 'out')).length;
    await page.evaluate(() => { window.tingshuo.ws.close(); window.tingshuo.restartIce(); });
    const after = (await waitForWs(page, 'out', (m) => m.type === 'offer', { skip: sentBefore }));
    const order = (await wsLog(page, 'out')).slice(sentBefore).map((m) => m.type);
    assert.ok(order.indexOf('resume') >= 0 && order.indexOf('resume') < order.indexOf('offer'),
      `resume goes before the offer: ${order.join(', ')}`);
    assert.equal(after.call_id, callId);
    await page.waitForFunction(() => !window.tingshuo.restarting && window.tingshuo.pc.connectionState === 'connected');
    await assertMediaFlows(page, 3000, 'after both');
    assert.equal(await healthCalls(srv), 1);

    // An ICE restart whose offer went out just before the socket dropped
    // gets no answer: after the resume the page restarts ICE again.
    sentBefore = (await wsLog(page, 'out')).length;
    await page.evaluate(() => {
      const ws = window.tingshuo.ws, send = ws.send.bind(ws);
      ws.send = (data) => { send(data); if (JSON.parse(data).type === 'offer') ws.close(); };
      window.tingshuo.restartIce();
    });
    await waitForWs(page, 'out', (m) => m.type === 'resume', { skip: sentBefore });
    await page.waitForFunction(() => !window.tingshuo.restarting && window.tingshuo.pc.connectionState === 'connected'
      && window.__sockets.length === 4, null, { timeout: 15000 });
    const types = (await wsLog(page, 'out')).slice(sentBefore).map((m) => m.type).filter((x) => x !== 'ice-candidate');
    assert.deepEqual(types, ['offer', 'resume', 'offer']);
    await page.waitForSelector('#status[data-state="incall"]');
    await assertMediaFlows(page, 6000, 'after a lost restart answer');
    assert.equal(await healthCalls(srv), 1);

    await page.click('#hangup');
    await page.waitForSelector('#status[data-state="ready"]');
    for (let i = 0; i < 50 && (await healthCalls(srv)) !== 0; i++) await page.waitForTimeout(100);
    assert.equal(await healthCalls(srv), 0);
    assertNoErrors();
  } finally {
    await browser.close();
    await srv.stop();
  }
});
