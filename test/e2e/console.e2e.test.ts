/**
 * The web console end to end: real Chromium (Debian's) against the renderer served by real
 * `understudy serve` nodes. Logs in with the link `console-url` prints, sees the pair and a
 * protected folder in sync, audits and switches over from the buttons, sees a killed peer go
 * down within 2 s, sees the license page with its tiers and a bad key refused, and that the console
 * refuses strangers (wrong token, wrong Host, no session).
 * Screenshots of the dashboard at 1280×800 and 1024×700 go to test-artifacts/e2e/.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { startPair, tempDir, TestNode, waitFor } from '../support/harness.js';
import { Artifacts, consoleUrl, launchChromium, screenshotBoth } from '../support/browser.js';

function rawGet(port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the web console', { concurrency: false }, () => {
  let browser: Browser;
  let page: Page;
  let primary: TestNode;
  let backup: TestNode;
  const dir = tempDir('e2e-');
  const source = join(dir, 'shop-files');

  before(async () => {
    mkdirSync(source);
    for (let i = 0; i < 10; i++) writeFileSync(join(source, `invoice-${i}.txt`), `invoice ${i}\n`);
    [primary, backup] = await startPair();
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  });

  after(async () => {
    await browser?.close();
    await primary?.destroy();
    await backup?.destroy();
  });

  test('the link console-url prints logs in, and the token leaves the address bar', async () => {
    const url = await consoleUrl(primary);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/#token=[A-Za-z0-9_-]{43}$/);
    await page.goto(url);
    await page.getByTestId('node-name').waitFor();
    assert.equal(await page.getByTestId('node-name').textContent(), 'alpha');
    assert.equal(await page.getByTestId('node-role').textContent(), 'primary');
    assert.equal(new URL(page.url()).hash, '', 'the token is cleared from the address bar');
    await page.getByTestId('peer-state-beta').filter({ hasText: 'up' }).waitFor({ timeout: 5000 });
  });

  test('a folder protected from the command line shows up in sync, with its audit', async () => {
    const protectedId = (await primary.cli('protect', 'folder', source, '--to', join(dir, 'copy'))).stdout.trim().split('\n').at(-1)!;
    const row = page.getByTestId(`object-${protectedId}`);
    await row.getByTestId('object-state').filter({ hasText: 'in-sync' }).waitFor({ timeout: 15_000 });
    await page.getByTestId('audit').click();
    await page.getByTestId('notice').filter({ hasText: 'Audit done' }).waitFor({ timeout: 15_000 });
    assert.match((await page.getByTestId('notice').textContent()) ?? '', new RegExp(`${protectedId}: clean`));
    await screenshotBoth(page, 'dashboard');
  });

  test('the license page shows the trial, the tiers with prices, and refuses a bad key with one line', async () => {
    await page.getByTestId('nav-license').click();
    const license = page.getByTestId('license');
    await license.waitFor();
    assert.match((await license.textContent()) ?? '', /^Trial: 30 of 30 days left/);
    const tiers = await page.getByTestId('tiers').locator('tbody tr').allTextContents();
    assert.equal(tiers.length, 6);
    assert.match(tiers[0]!, /P05.*up to 4 cores.*\$13,000/);
    assert.match(tiers[5]!, /P50.*any number of cores.*\$68,000/);
    await page.getByTestId('license-key').fill('US1.not-a-real-key');
    await page.getByTestId('license-install').click();
    await page.getByTestId('license-message').waitFor();
    assert.match((await page.getByTestId('license-message').textContent()) ?? '', /license key is incomplete or damaged.*paste the whole key/);
    await page.getByTestId('license').scrollIntoViewIfNeeded();
    await screenshotBoth(page, 'license');
    await page.getByTestId('nav-dashboard').click();
  });

  test('the switchover button swaps the roles', async () => {
    await page.getByTestId('readiness').filter({ hasText: 'Ready' }).waitFor({ timeout: 10_000 });
    await page.getByTestId('switchover').click();
    await page.getByTestId('notice').filter({ hasText: 'Switchover done' }).waitFor({ timeout: 15_000 });
    await page.getByTestId('node-role').filter({ hasText: 'backup' }).waitFor({ timeout: 5000 });
    assert.equal((await backup.status()).node.role, 'primary');
    await page.screenshot({ path: join(Artifacts, 'dashboard-after-switchover.png') });
  });

  test('a killed peer shows as down within 2 s', async () => {
    await page.getByTestId('peer-state-beta').filter({ hasText: 'up' }).waitFor({ timeout: 5000 });
    const killedAt = Date.now();
    await backup.kill();
    await page.getByTestId('peer-state-beta').filter({ hasText: 'down' }).waitFor({ timeout: 2000 });
    const shownMs = Date.now() - killedAt;
    assert.ok(shownMs <= 2000, `shown after ${shownMs} ms`);
    console.log(`# peer shown down ${shownMs} ms after kill -9`);
    await page.screenshot({ path: join(Artifacts, 'dashboard-peer-down.png') });
    await backup.serve();
  });

  test('strangers are refused: a wrong token, another Host, a WebSocket without a session', async () => {
    const url = new URL(await consoleUrl(primary));
    const port = Number(url.port);
    const stranger = await browser.newPage();
    await stranger.goto(`http://127.0.0.1:${port}/#token=${'A'.repeat(43)}`);
    await stranger.getByRole('alert').waitFor();
    assert.match((await stranger.getByRole('alert').textContent()) ?? '', /token is wrong or old/);
    // Without a session the control socket does not open.
    const opened = await stranger.evaluate(
      (p) => new Promise<boolean>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${p}/api/control`);
        ws.onopen = () => resolve(true);
        ws.onerror = () => resolve(false);
      }),
      port,
    );
    assert.equal(opened, false);
    await stranger.close();
    // DNS rebinding: a request that names another host is refused.
    assert.equal(await rawGet(port, `evil.example:${port}`), 421);
    assert.equal(await rawGet(port, `127.0.0.1:${port}`), 200);
    await waitFor('nothing else', () => true);
  });
});
