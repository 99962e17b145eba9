/**
 * Licensing between real nodes: a key issued with the test vendor key, installed once and
 * passed to the peer; every kind of bad key refused with one line and nothing changed; a trial
 * that setting the clock back does not stretch; and an expired license that holds back new
 * configuration but never protection: replication goes on and a switchover still happens.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LicenseReport } from '../../src-main/contract/control.js';
import { assertRefused } from '../support/checks.js';
import { runCli, startPair, tempDir, TestNode, waitFor, waitPeerUp } from '../support/harness.js';

// Every process of this file (nodes and CLI runs) trusts the throwaway test vendor key.
process.env.UNDERSTUDY_DEV = '1';
const VendorKey = fileURLToPath(new URL('../../../test/fixtures/license/vendor-test.pem', import.meta.url));
const Day = 86_400_000;
const inDays = (days: number) => new Date(Date.now() + days * Day).toISOString();

async function issue(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const result = await runCli(['license', 'issue', '--customer', 'Acme Hardware', ...args], env);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout.trim().split('\n').at(-1)!;
}

async function show(node: TestNode): Promise<LicenseReport> {
  const result = await node.cli('license', 'show', '--json');
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as LicenseReport;
}

describe('licensing', { concurrency: false }, () => {
  const nodes: TestNode[] = [];
  after(async () => {
    await Promise.all(nodes.map((node) => node.destroy()));
  });

  test('issued once, installed on the primary, shown on both nodes: the key passes to the backup by itself', async () => {
    const [primary, backup] = await startPair();
    nodes.push(primary, backup);
    for (const node of [primary, backup]) assert.equal((await show(node)).state, 'trial');
    const key = await issue(['--tier', 'P05', '--days', '365', '--key', VendorKey]);
    const installed = await primary.cli('license', 'install', key);
    assert.equal(installed.code, 0, installed.stderr);
    assert.match(installed.stdout, /Installed\. P05 license for Acme Hardware/);
    assert.match(installed.stdout, /covers both nodes/);
    const onBackup = await waitFor('the license to reach the backup', async () => {
      const report = await show(backup);
      return report.state === 'valid' ? report : undefined;
    }, 5000);
    const onPrimary = await show(primary);
    for (const report of [onPrimary, onBackup]) {
      assert.equal(report.tier, 'P05');
      assert.equal(report.customer, 'Acme Hardware');
      assert.equal(report.daysLeft, 365);
      assert.equal(report.nodes, 2);
    }
    assert.equal(onBackup.licenseId, onPrimary.licenseId);
    assert.equal(onBackup.expiresAt, onPrimary.expiresAt);
    assert.ok(backup.events.some((e) => e.type === 'license.installed' && e.source === 'peer'), 'the backup says where its key came from');
    assert.equal((await backup.status()).license.state, 'valid', 'status carries the license too');
    const human = await backup.cli('license', 'show');
    assert.match(human.stdout, /^License {3}valid: P05 license for Acme Hardware/);
    assert.match(human.stdout, /one license covers both nodes/);
    // A node that was stopped when the key was installed gets it when it comes back.
    await backup.stop();
    const renewal = await issue(['--tier', 'P05', '--days', '730', '--key', VendorKey]);
    assert.equal((await primary.cli('license', 'install', renewal)).code, 0);
    assert.equal((await show(backup)).daysLeft, 365, 'shown from the store while the node is stopped');
    await backup.serve();
    await waitFor('the renewal to reach the backup', async () => ((await show(backup)).daysLeft === 730 ? true : undefined), 5000);
  });

  test('bad keys: tampered, signed by another key, truncated, expired, garbage: one line each, nothing changed', async () => {
    const primary = nodes[0]!;
    const before = await show(primary);
    const good = await issue(['--tier', 'P10', '--days', '30', '--key', VendorKey]);
    const middle = Math.floor(good.length / 2);
    const tampered = good.slice(0, middle) + (good[middle] === 'x' ? 'y' : 'x') + good.slice(middle + 1);
    const otherVendor = join(tempDir('license-other-'), 'other.pem');
    writeFileSync(otherVendor, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const foreign = await issue(['--tier', 'P10', '--days', '30', '--key', otherVendor]);
    const expired = await issue(['--tier', 'P10', '--days', '30', '--key', VendorKey], { UNDERSTUDY_NOW: inDays(-40) });
    const cases: [string, string, RegExp, RegExp][] = [
      ['tampered', tampered, /does not match its signature|incomplete or damaged|not signed by Understudy/, /paste|use a key/],
      ['another vendor key', foreign, /not signed by Understudy/, /issued by Understudy or your reseller/],
      ['truncated', good.slice(0, -12), /incomplete or damaged/, /paste the whole key/],
      ['expired', expired, /this license key expired on \d{4}-\d\d-\d\d/, /renewal key/],
      ['garbage', 'letmein', /not an Understudy license key/, /paste the whole key/],
    ];
    for (const [what, key, says, todo] of cases) {
      await assert.doesNotReject(async () => assertRefused(await primary.cli('license', 'install', key), { exit: 1, says, todo }), what);
    }
    assert.deepEqual(await show(primary), before, 'the installed license is as it was');
  });

  test('a trial run out holds back new configuration; setting the clock back does not start it again', async () => {
    const dir = tempDir('license-trial-');
    mkdirSync(join(dir, 'docs'));
    const node = await TestNode.create('gamma');
    nodes.push(node);
    // The trial starts with the first run; the node runs again 31 days later.
    await node.serve();
    assert.equal((await show(node)).daysLeft, 30);
    await node.stop();
    await node.serve([], { UNDERSTUDY_NOW: inDays(31) });
    let report = await show(node);
    assert.equal(report.state, 'expired');
    assert.equal(report.kind, 'trial');
    assert.ok(node.events.some((e) => e.type === 'license.warning'), 'a license.warning event');
    assertRefused(await node.cli('protect', 'folder', join(dir, 'docs')), { exit: 1, says: /protecting a new folder or database needs a license in order .*trial ended/, todo: /license install KEY/ });
    assertRefused(await node.cli('pair-code'), { exit: 1, says: /pairing a new backup needs a license in order/, todo: /license install KEY/ });
    // The admin sets the clock back 31 days (here: the node runs on the real date again).
    await node.stop();
    await node.serve();
    report = await show(node);
    assert.equal(report.state, 'expired', 'the trial stays over');
    assert.match(report.warnings.join(' '), /clock is \d+ minutes behind the latest time this node has seen/);
  });

  test('an expired license never stops protection: replication goes on and a switchover still happens', async () => {
    const dir = tempDir('license-expired-');
    const [source, target] = [join(dir, 'alpha-files'), join(dir, 'beta-files')];
    mkdirSync(source);
    writeFileSync(join(source, 'before.txt'), 'protected while licensed');
    const [primary, backup] = await startPair();
    nodes.push(primary, backup);
    assert.equal((await primary.cli('license', 'install', await issue(['--tier', 'P05', '--days', '2', '--key', VendorKey]))).code, 0);
    assert.equal((await primary.cli('protect', 'folder', source, '--to', target)).code, 0);
    await waitFor('before.txt on the backup', () => (existsSync(join(target, 'before.txt')) ? true : undefined));
    await waitFor('the key on the backup', async () => ((await show(backup)).state === 'valid' ? true : undefined), 5000);

    // Three days later, on both machines: the two-day license has expired.
    await Promise.all([primary.stop(), backup.stop()]);
    await Promise.all([primary.serve([], { UNDERSTUDY_NOW: inDays(3) }), backup.serve([], { UNDERSTUDY_NOW: inDays(3) })]);
    await Promise.all([waitPeerUp(primary), waitPeerUp(backup)]);
    for (const node of [primary, backup]) {
      const status = await node.status();
      assert.equal(status.license.state, 'expired', `${node.name}'s license`);
      assert.match(status.license.warnings.join(' '), /protection goes on/);
    }
    writeFileSync(join(source, 'after.txt'), 'written after the license expired');
    await waitFor('after.txt on the backup', () => (existsSync(join(target, 'after.txt')) ? true : undefined), 10_000);
    assert.equal(readFileSync(join(target, 'after.txt'), 'utf8'), 'written after the license expired');
    assertRefused(await primary.cli('protect', 'folder', dir), { exit: 1, says: /license in order .*expired on .*everything already protected stays protected/, todo: /license install KEY/ });

    const switched = await backup.cli('switchover', '--json');
    assert.equal(switched.code, 0, switched.stderr);
    assert.equal(JSON.parse(switched.stdout).role, 'primary');
    assert.deepEqual([(await primary.status()).node.role, (await backup.status()).node.role], ['backup', 'primary']);
    writeFileSync(join(target, 'from-beta.txt'), 'written on the new primary');
    await waitFor('from-beta.txt back on alpha', () => (existsSync(join(source, 'from-beta.txt')) ? true : undefined), 10_000);
  });
});
