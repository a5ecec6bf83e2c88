// The page follows a cluster's `redirect` (docs/cluster.md): a node that places
// the call on another node answers the offer with `redirect`, and the page must
// open a WebSocket there and send the same offer, marked redirected, without the
// caller noticing. One real node and Redis; the "other node" is a registry entry
// written here, less loaded than any real one, whose URL is this same node under
// another query string, so the second socket is told apart from the first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, tempDir, speechWav, waitForWs, wsLog }
  from '../lib/harness.mjs';
import { startRedis, redisMissing } from '../lib/redis.mjs';
import { placeCall } from '../lib/call.mjs';

async function metric(url, line) {
  const text = await (await fetch(url + 'metrics')).text();
  const m = text.split('\n').find((l) => l.startsWith(line + ' '));
  return m ? Number(m.slice(line.length + 1)) : NaN;
}

// A registered node less loaded than any real one, at this node's own address under another
// query string: placement prefers it, and its offers land here, marked redirected.
async function fakeNode(redis, srv) {
  const target = srv.wsUrl('/ws?node=z');
  redis.cli('HSET', 'tingshuo:node:z', 'id', 'z', 'url', target, 'max_calls', '10',
    'calls', '-1', 'draining', '0', 'updated', '0');
  redis.cli('EXPIRE', 'tingshuo:node:z', '60');
  redis.cli('SADD', 'tingshuo:nodes', 'z');
  await until('node a to see z', async () =>
    (await metric(srv.url, 'tingshuo_cluster_nodes')) === 2);
  return target;
}

async function until(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('the page follows a redirect to the node the call is placed on', { skip: redisMissing() || false },
  async () => {
    const dir = tempDir();
    const wav = speechWav(dir, 'hello', 'Hello there.', { before: 0.5, after: 2 });
    const redis = await startRedis();
    const srv = await startServer({ args: ['--agent', 'echo', '--cluster-redis-url', redis.url,
      '--node-id', 'a'] });
    const browser = await launchBrowser({ wav });
    try {
      const target = await fakeNode(redis, srv);

      const { page, assertNoErrors } = await openPage(browser, srv.url, { recordWs: true });
      await page.waitForSelector('#status[data-state="ready"]');
      await page.click('#call');
      const redirect = await waitForWs(page, 'in', (m) => m.type === 'redirect');
      assert.equal(redirect.url, target);
      assert.equal(redirect.reason, 'placement');
      await page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });

      const offers = (await wsLog(page, 'out')).filter((m) => m.type === 'offer');
      assert.equal(offers.length, 2, 'the offer, then the same offer at the redirect\'s URL');
      assert.equal(offers[0].redirected, undefined);
      assert.equal(offers[1].redirected, true);
      // The same session (its candidates may have been gathered meanwhile).
      const creds = (sdp) => sdp.split('\r\n').filter((l) => /^a=(ice-ufrag|ice-pwd|fingerprint):/.test(l));
      assert.deepEqual(creds(offers[1].sdp), creds(offers[0].sdp));
      const urls = await page.evaluate(() => window.__sockets.map((s) => s.url));
      assert.equal(urls[urls.length - 1], target);
      const answer = (await wsLog(page, 'in')).find((m) => m.type === 'answer');
      assert.ok(answer, 'answered on the second socket');
      assert.equal(await metric(srv.url, 'tingshuo_cluster_redirects_total{reason="placement"}'), 1);
      // The call is registered for a resume on any node.
      assert.equal(redis.cli('GET', `tingshuo:call:${answer.call_id}`), 'a');

      await page.click('#hangup');
      await page.waitForSelector('#status[data-state="ready"]');
      await until('the call key to go', async () =>
        redis.cli('EXISTS', `tingshuo:call:${answer.call_id}`) === '0');
      assertNoErrors();
    } finally {
      await browser.close();
      await srv.stop();
      await redis.remove();
    }
  });

test('tingshuo call follows a redirect too', { skip: redisMissing() || false }, async () => {
  const dir = tempDir();
  const wav = speechWav(dir, 'hello', 'Hello there.', { before: 0.5, after: 1 });
  const redis = await startRedis();
  const srv = await startServer({ args: ['--agent', 'echo', '--cluster-redis-url', redis.url,
    '--node-id', 'a'] });
  try {
    await fakeNode(redis, srv);
    const call = placeCall(srv.url, wav, { timeoutS: 20 });
    await until('the answer', async () => call.id !== null || call.child.exitCode !== null, 15000)
      .catch(() => {});
    assert.ok(call.id, `answered after the redirect\n${call.dump()}`);
    assert.doesNotMatch(call.stdout, /redirect/, 'the caller does not see the redirect');
    assert.equal(await metric(srv.url, 'tingshuo_cluster_redirects_total{reason="placement"}'), 1);
    assert.equal(redis.cli('GET', `tingshuo:call:${call.id}`), 'a');
    call.child.kill('SIGINT');
    await call.done;
  } finally {
    await srv.stop();
    await redis.remove();
  }
});
