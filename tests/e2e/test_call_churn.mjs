// 100 calls made and dropped: 90 hung up from the page, 10 by closing the
// tab (the server then waits resume_timeout_ms for the page to come back).
// Every call must be freed: the server ends with no call, and under the
// sanitizer build its clean exit means LeakSanitizer found 0 bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage } from '../lib/harness.mjs';

async function calls(srv) {
  return (await (await fetch(srv.url + 'healthz')).json()).calls;
}

test('100 calls made and dropped leave nothing behind', { timeout: 300000 }, async () => {
  const srv = await startServer({ args: ['--agent', 'echo', '--resume-timeout-ms', '500'] });
  const browser = await launchBrowser();
  try {
    const { page, assertNoErrors } = await openPage(browser, srv.url);
    for (let i = 0; i < 90; i++) {
      await page.waitForSelector('#status[data-state="ready"]');
      await page.click('#call');
      await page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
      await page.click('#hangup');
    }
    assertNoErrors();
    for (let i = 0; i < 10; i++) {
      const tab = await openPage(browser, srv.url);
      await tab.page.waitForSelector('#status[data-state="ready"]');
      await tab.page.click('#call');
      await tab.page.waitForSelector('#status[data-state="incall"]', { timeout: 15000 });
      await tab.context.close(); // the tab vanishes mid-call
    }
    for (let i = 0; i < 100 && (await calls(srv)) !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await calls(srv), 0);
  } finally {
    await browser.close();
    await srv.stop(); // asserts exit status 0: under ASan, no leak
  }
});
