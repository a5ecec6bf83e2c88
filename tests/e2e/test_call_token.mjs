// The page and call tokens: on a server with call_auth = token the page
// calls with the token it was given (?token= in its address, or
// window.tingshuoCallToken set by an embedding page, asked before each
// call), and without one it shows the server's refusal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, run } from '../lib/harness.mjs';

const SECRET = 'call-secret-for-page-tests-012345';

async function token(sub) {
  const r = await run(['token', '--ttl', '120', '--sub', sub], { env: { TINGSHUO_CALL_SECRET: SECRET } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').at(-1);
}

test('the page passes the call token it was given', async () => {
  const srv = await startServer({ args: ['--agent', 'echo', '--call-auth', 'token'],
    env: { TINGSHUO_CALL_SECRET: SECRET } });
  const browser = await launchBrowser();
  try {
    // No token: refused, and the page says why.
    const bare = await openPage(browser, srv.url);
    await bare.page.waitForSelector('#status[data-state="ready"]');
    await bare.page.click('#call');
    await bare.page.waitForSelector('#status[data-state="error"]');
    assert.match(await bare.page.textContent('#status'), /call token/);
    await bare.context.close();

    // ?token= in the page's address.
    const viaUrl = await openPage(browser, `${srv.url}?token=${encodeURIComponent(await token('url-visitor'))}`);
    await viaUrl.page.waitForSelector('#status[data-state="ready"]');
    await viaUrl.page.click('#call');
    await viaUrl.page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
    await viaUrl.page.click('#hangup');
    await viaUrl.page.waitForSelector('#status[data-state="ready"]');
    viaUrl.assertNoErrors();
    await viaUrl.context.close();

    // An embedding page's function, asked once per call.
    const fresh = [await token('embed-1'), await token('embed-2')];
    const embedded = await openPage(browser, srv.url);
    await embedded.context.addInitScript((tokens) => {
      window.asked = 0;
      window.tingshuoCallToken = async () => tokens[window.asked++];
    }, fresh);
    await embedded.page.reload();
    for (let i = 0; i < 2; i++) {
      await embedded.page.waitForSelector('#status[data-state="ready"]');
      await embedded.page.click('#call');
      await embedded.page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
      await embedded.page.click('#hangup');
    }
    await embedded.page.waitForSelector('#status[data-state="ready"]');
    assert.equal(await embedded.page.evaluate(() => window.asked), 2);
    embedded.assertNoErrors();
    await embedded.context.close();
    const log = srv.stderr;
    for (const sub of ['url-visitor', 'embed-1', 'embed-2']) assert.match(log, new RegExp(`token sub "${sub}"`));
  } finally {
    await browser.close();
    await srv.stop();
  }
});
