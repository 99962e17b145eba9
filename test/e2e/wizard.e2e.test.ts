/**
 * The setup wizard end to end, as a new user meets it: two fresh nodes (created, served, never
 * configured), one browser window on each node's web console, driven from nothing to a
 * protected folder and database in sync — production in 7 screens, the backup in 6. Then a
 * change made by the shop's application reaches the backup's disk, and the dashboard shows it.
 * Every screen is saved at 1280×800 and 1024×700 in test-artifacts/e2e/wizard-*.png.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Browser, Page } from 'playwright-core';
import { tempDir, TestNode, waitFor } from '../support/harness.js';
import { Artifacts, consoleUrl, launchChromium, screenshotBoth } from '../support/browser.js';

const FiveMinutes = 5 * 60_000;

describe('the setup wizard on two fresh nodes', { concurrency: false }, () => {
  let browser: Browser;
  let production: TestNode;
  let backup: TestNode;
  let witness: TestNode | undefined;
  let prod: Page;
  let back: Page;
  const dir = tempDir('wizard-');
  const shop = join(dir, 'shop');
  const files = join(shop, 'invoices');
  const database = join(shop, 'orders.db');
  const copies = join(dir, 'backup-disk');
  const unitDir = join(dir, 'systemd');

  async function step(page: Page, expected: RegExp): Promise<void> {
    await page.getByTestId('wizard-step').filter({ hasText: expected }).waitFor({ timeout: 10_000 });
  }

  async function next(page: Page): Promise<void> {
    const button = page.getByTestId('wizard-next');
    await waitFor('Next to be enabled', async () => ((await button.isEnabled()) ? true : undefined), 30_000, 100);
    await button.click();
  }

  before(async () => {
    mkdirSync(files, { recursive: true });
    mkdirSync(copies);
    mkdirSync(unitDir);
    for (let i = 0; i < 50; i++) writeFileSync(join(files, `invoice-${i}.txt`), `invoice ${i}\n`.repeat(200));
    const db = new Database(database);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, qty INTEGER)');
    const insert = db.prepare('INSERT INTO orders (item, qty) VALUES (?, ?)');
    for (let i = 0; i < 200; i++) insert.run(`item ${i}`, i % 7);
    db.close();
    // Dev mode lets the wizard's service install write its unit into a folder of the test's own.
    const env = { UNDERSTUDY_DEV: '1', UNDERSTUDY_SERVICE_DIR: unitDir, UNDERSTUDY_HISTORY_MS: '500' };
    production = await TestNode.create('shop-server');
    backup = await TestNode.create('shop-backup');
    await production.serve([], env);
    await backup.serve([], env);
    browser = await launchChromium();
    prod = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    back = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  });

  after(async () => {
    await browser?.close();
    await production?.destroy();
    await backup?.destroy();
    await witness?.destroy();
  });

  test('both wizards, from nothing to a protected folder and database in sync, in well under 5 minutes', async () => {
    const started = Date.now();
    await prod.goto(await consoleUrl(production));
    await back.goto(await consoleUrl(backup));

    // 1. Role (and the service, on production).
    await step(prod, /Step 1 of 7: This machine/);
    await prod.getByTestId('role-production').check();
    assert.equal(await prod.getByTestId('service-install').isChecked(), true, 'the service is recommended: checked by default');
    await screenshotBoth(prod, 'wizard-production-1-role');
    await next(prod);
    await step(prod, /Step 2 of 7: Pair/);
    const unit = readFileSync(join(unitDir, 'understudy.service'), 'utf8');
    assert.match(unit, new RegExp(`"serve" "--home" "${production.home}"`), 'the unit runs this very home');

    await step(back, /Step 1 of 7/);
    await back.getByTestId('role-backup').check();
    await back.getByTestId('service-install').uncheck();
    await screenshotBoth(back, 'wizard-backup-1-role');
    await next(back);

    // 2. Pairing: production shows its address and a code; the backup types them in.
    await step(back, /Step 2 of 6: Pair/);
    const code = await prod.getByTestId('pair-code').filter({ hasText: /-/ }).textContent();
    const address = await prod.getByTestId('pair-address').textContent();
    assert.equal(address, production.address);
    await screenshotBoth(prod, 'wizard-production-2-pair');
    await back.getByTestId('pair-peer').fill(address!);
    await back.getByTestId('pair-code-input').fill(code!);
    await back.getByTestId('pair-join').click();
    await back.getByTestId('paired').waitFor({ timeout: 10_000 });
    await screenshotBoth(back, 'wizard-backup-2-pair');
    await prod.getByTestId('paired').waitFor({ timeout: 10_000 });
    assert.match((await prod.getByTestId('paired').textContent()) ?? '', /shop-backup/);
    await next(prod);
    await next(back);

    // 3. License: the trial.
    await step(prod, /Step 3 of 7: License/);
    // The node keeps the wizard's place, not the page: a reload (or another window) resumes it.
    await prod.reload();
    await step(prod, /Step 3 of 7: License/);
    await prod.getByTestId('license').filter({ hasText: /Trial/ }).waitFor();
    await screenshotBoth(prod, 'wizard-production-3-license');
    await next(prod);
    await step(back, /Step 3 of 6: License/);
    await screenshotBoth(back, 'wizard-backup-3-license');
    await next(back);

    // 4. What to protect, from the engine's path browser; the copies go elsewhere on this one machine.
    await step(prod, /Step 4 of 7: What to protect/);
    await prod.getByTestId('browse-path').fill(shop);
    await prod.getByTestId('browse-path').press('Enter');
    await prod.getByTestId('browse-orders.db').filter({ hasText: 'SQLite database' }).waitFor();
    await prod.getByTestId('choose-invoices').click();
    await prod.getByTestId('choose-orders.db').click();
    await prod.getByTestId('chosen').filter({ hasText: /50 files/ }).waitFor();
    await prod.getByTestId('target-invoices').fill(join(copies, 'invoices'));
    await prod.getByTestId('target-orders.db').fill(join(copies, 'orders.db'));
    await screenshotBoth(prod, 'wizard-production-4-protect');
    await prod.getByTestId('protect-chosen').click();
    await prod.getByTestId('step-message').filter({ hasText: 'Protected 2 items' }).waitFor({ timeout: 15_000 });
    assert.equal(await prod.getByTestId('protected-list').locator('li').count(), 2);
    await next(prod);

    // 5. Failover policy: no witness here, so "ask me"; a start hook on production.
    await step(prod, /Step 5 of 7: Failover/);
    await prod.getByTestId('policy-ask').check();
    await prod.getByTestId('hook-start').fill('true');
    await screenshotBoth(prod, 'wizard-production-5-failover');
    await next(prod);
    await step(back, /Step 4 of 6: Failover/);
    // One policy for the pair: the backup's screen shows production's choice, and keeps it.
    await waitFor('the backup to show "ask me"', async () => ((await back.getByTestId('policy-ask').isChecked()) ? true : undefined), 5000, 100);
    await screenshotBoth(back, 'wizard-backup-4-failover');
    await next(back);

    // 6. The first copy, with progress, on both.
    await step(prod, /Step 6 of 7: First copy/);
    await prod.getByTestId('sync-done').waitFor({ timeout: 60_000 });
    await screenshotBoth(prod, 'wizard-production-6-sync');
    await next(prod);
    await step(back, /Step 5 of 6: First copy/);
    await back.getByTestId('sync-done').waitFor({ timeout: 60_000 });
    await screenshotBoth(back, 'wizard-backup-5-sync');
    await next(back);

    // 7. Done, then the dashboard.
    await step(prod, /Step 7 of 7: Done/);
    assert.match((await prod.getByTestId('done-summary').textContent()) ?? '', /shop-server is production, paired with shop-backup/);
    await screenshotBoth(prod, 'wizard-production-7-done');
    await prod.getByTestId('wizard-finish').click();
    await step(back, /Step 6 of 6: Done/);
    await screenshotBoth(back, 'wizard-backup-6-done');
    await back.getByTestId('wizard-finish').click();
    await prod.getByTestId('node-role').filter({ hasText: 'primary' }).waitFor();
    await back.getByTestId('node-role').filter({ hasText: 'backup' }).waitFor();

    const elapsed = Date.now() - started;
    console.log(`# both wizards done in ${(elapsed / 1000).toFixed(1)} s`);
    assert.ok(elapsed < FiveMinutes, `took ${elapsed} ms`);

    // What the wizard promised is really on the backup's disk.
    for (let i = 0; i < 50; i++) assert.equal(readFileSync(join(copies, 'invoices', `invoice-${i}.txt`), 'utf8'), readFileSync(join(files, `invoice-${i}.txt`), 'utf8'));
    const copy = new Database(join(copies, 'orders.db'), { readonly: true });
    assert.equal((copy.prepare('SELECT count(*) AS n FROM orders').get() as { n: number }).n, 200);
    copy.close();
    const onBackup = (await backup.status()).node;
    assert.equal(onBackup.failoverPolicy, 'ask', 'one policy for the pair: the backup holds "ask me" too');
    assert.equal(onBackup.maintenance, false, '"ask me" is not maintenance mode: switchovers still run');
    assert.equal((await production.status()).node.role, 'primary');
  });

  test('a change made by the shop reaches the backup, and the dashboard shows it in sync with its lag chart', async () => {
    const db = new Database(database);
    db.prepare('INSERT INTO orders (item, qty) VALUES (?, ?)').run('after setup', 1);
    db.close();
    writeFileSync(join(files, 'invoice-new.txt'), 'a new invoice\n');
    await waitFor('the new invoice on the backup', () => (existsSync(join(copies, 'invoices', 'invoice-new.txt')) ? true : undefined), 15_000);
    await waitFor(
      'the new order on the backup',
      () => {
        const copy = new Database(join(copies, 'orders.db'), { readonly: true });
        try {
          return (copy.prepare("SELECT count(*) AS n FROM orders WHERE item = 'after setup'").get() as { n: number }).n === 1 ? true : undefined;
        } finally {
          copy.close();
        }
      },
      15_000,
    );
    const rows = prod.getByTestId('objects').locator('tbody tr[data-testid^="object-"]');
    assert.equal(await rows.count(), 2);
    for (const row of await rows.all()) await row.getByTestId('object-state').filter({ hasText: 'in-sync' }).waitFor({ timeout: 15_000 });
    await waitFor('lag samples on the chart', async () => (Number(await prod.getByTestId('lag-chart').getAttribute('data-samples')) >= 2 ? true : undefined), 15_000, 200);
    await screenshotBoth(prod, 'wizard-dashboard-production');

    // Pause from the dashboard: changes wait on production; Resume sends them.
    const folderRow = prod.getByTestId('objects').locator('tbody tr[data-testid^="object-"]', { hasText: 'folder' }).first();
    await folderRow.getByTestId('pause').click();
    await prod.getByTestId('notice').filter({ hasText: 'Paused' }).waitFor({ timeout: 10_000 });
    await folderRow.getByTestId('object-state').filter({ hasText: 'paused' }).waitFor({ timeout: 5000 });
    writeFileSync(join(files, 'while-paused.txt'), 'held back\n');
    await folderRow.getByTestId('object-pending').filter({ hasText: /^[1-9]/ }).waitFor({ timeout: 10_000 });
    assert.equal(existsSync(join(copies, 'invoices', 'while-paused.txt')), false, 'nothing is sent while paused');
    await screenshotBoth(prod, 'dashboard-paused');
    await folderRow.getByTestId('resume').click();
    await waitFor('the held-back file on the backup', () => (existsSync(join(copies, 'invoices', 'while-paused.txt')) ? true : undefined), 15_000);
    await folderRow.getByTestId('object-state').filter({ hasText: 'in-sync' }).waitFor({ timeout: 15_000 });
    await prod.screenshot({ path: join(Artifacts, 'wizard-dashboard-production-full.png'), fullPage: true });
    await screenshotBoth(back, 'wizard-dashboard-backup');
  });

  test('a witness joins through its own wizard (3 screens); with the policy set to automatic in Settings, the backup takes over when production dies', async () => {
    witness = await TestNode.create('shop-witness');
    await witness.serve([], {}, 'witness');
    await prod.getByTestId('nav-settings').click();
    await prod.getByTestId('settings-witness-pair').click();
    const code = await prod.getByTestId('settings-witness-code').textContent();
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(await consoleUrl(witness));
    await step(page, /Step 1 of 7/);
    await page.getByTestId('role-witness').check();
    await page.getByTestId('service-install').uncheck();
    await step(page, /Step 1 of 3/);
    await screenshotBoth(page, 'wizard-witness-1-role');
    await next(page);
    await step(page, /Step 2 of 3: Pair/);
    await page.getByTestId('pair-peer').fill(production.address);
    await page.getByTestId('pair-code-input').fill(code!);
    await page.getByTestId('pair-join').click();
    await page.getByTestId('paired').waitFor({ timeout: 10_000 });
    await screenshotBoth(page, 'wizard-witness-2-pair');
    await next(page);
    await step(page, /Step 3 of 3: Done/);
    await screenshotBoth(page, 'wizard-witness-3-done');
    await page.getByTestId('wizard-finish').click();
    await page.getByTestId('node-role').filter({ hasText: 'witness' }).waitFor();

    await prod.getByTestId('settings-witness').filter({ hasText: 'shop-witness (up)' }).waitFor({ timeout: 10_000 });
    await prod.getByTestId('settings-policy-automatic').check();
    await prod.getByTestId('settings-message').filter({ hasText: 'Failover policy saved' }).waitFor();
    await screenshotBoth(prod, 'settings');
    await waitFor('the backup to hold the automatic policy', async () => ((await backup.status()).node.failoverPolicy === 'automatic' ? true : undefined), 5000);
    await waitFor('the backup to see the witness up', async () => ((await backup.status()).witness?.state === 'up' ? true : undefined), 10_000);

    await production.kill();
    await back.getByTestId('node-role').filter({ hasText: 'primary' }).waitFor({ timeout: 10_000 });
    await back.getByTestId('peer-state-shop-server').filter({ hasText: 'down' }).waitFor({ timeout: 5000 });
    await screenshotBoth(back, 'wizard-dashboard-after-failover');
    await back.getByTestId('nav-about').click();
    assert.match((await back.getByTestId('about-engine').textContent()) ?? '', /'understudy serve', started by hand/);
    await screenshotBoth(back, 'about');
    await page.close();
  });
});
