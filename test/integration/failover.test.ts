/**
 * Automatic failover with a witness, between real processes on loopback: the backup takes
 * over by itself when the primary dies (and runs its start hook), the old primary comes back
 * as the backup, a frozen primary steps down on waking, and without a witness or in
 * maintenance mode or under the "ask" failover policy nothing happens by itself.
 */
import { afterEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sleep, startPair, startTrio, tempDir, TestNode, waitFor, waitTrioUp } from '../support/harness.js';

/** Generous: the goal is 2 s at default settings; this only catches a failover that does not happen. */
const FailoverWithinMs = 8000;

describe('automatic failover', { concurrency: false }, () => {
  let nodes: TestNode[] = [];
  afterEach(async () => {
    await Promise.all(nodes.map((node) => node.destroy()));
    nodes = [];
  });

  async function trioWithHooks(): Promise<{ primary: TestNode; backup: TestNode; witness: TestNode; marks: string }> {
    const [primary, backup, witness] = await startTrio();
    nodes = [primary, backup, witness];
    const marks = join(tempDir('understudy-failover-marks-'), 'hooks.log');
    for (const node of [primary, backup]) {
      const set = await node.cli('hooks', 'set', '--start', `echo "start ${node.name}" >> ${marks}`, '--stop', `echo "stop ${node.name}" >> ${marks}`);
      assert.equal(set.code, 0, set.stderr);
    }
    return { primary, backup, witness, marks };
  }

  test('the backup learns of the witness through the primary; the primary holds a lease', async () => {
    const { primary, backup, witness } = await trioWithHooks();
    const status = await backup.status();
    assert.equal(status.witness?.name, 'witness');
    assert.equal(status.witness?.state, 'up');
    const onPrimary = await primary.status();
    assert.equal(onPrimary.node.acting, true);
    assert.ok((onPrimary.node.leaseMs ?? 0) > 0, `a lease on the primary (${onPrimary.node.leaseMs})`);
    assert.equal((await witness.status()).node.role, 'witness');
    assert.deepEqual((await witness.status()).peers.map((p) => p.role).sort(), ['backup', 'primary']);
  });

  test('kill -9 of the primary: the backup becomes primary by itself and runs its start hook; the old primary comes back as the backup', async () => {
    const { primary, backup, witness, marks } = await trioWithHooks();
    const since = backup.events.length;
    const killedAt = Date.now();
    await primary.kill();
    const done = await backup.waitForEvent('failover.done', since, FailoverWithinMs);
    const tookMs = Date.parse(done.at) - killedAt;
    const status = await backup.status();
    assert.equal(status.node.role, 'primary');
    assert.equal(status.node.epoch, 2);
    assert.equal(status.node.acting, true);
    await waitFor('the start hook to run on the new primary', () => (existsSync(marks) && readFileSync(marks, 'utf8').includes('start beta') ? true : undefined), 5000);
    // The old primary starts again: it learns of epoch 2 and becomes the backup.
    await primary.serve();
    const demoted = await primary.waitForEvent('role.demoted', 0, 15_000);
    assert.equal(demoted.epoch, 2);
    const back = await primary.status();
    assert.equal(back.node.role, 'backup');
    assert.equal(back.node.acting, false);
    await waitTrioUp(backup, primary, witness);
    assert.ok(tookMs < FailoverWithinMs, `failover took ${tookMs} ms`);
    console.log(`# failover after kill -9: ${tookMs} ms`);
  });

  test('SIGSTOP of the primary past its lease: the backup takes over; on SIGCONT the old primary steps down', async () => {
    const { primary, backup } = await trioWithHooks();
    const since = backup.events.length;
    const primarySince = primary.events.length;
    primary.signal('SIGSTOP');
    await backup.waitForEvent('failover.done', since, FailoverWithinMs);
    primary.signal('SIGCONT');
    await primary.waitForEvent('role.demoted', primarySince, 15_000);
    const after = primary.events.slice(primarySince);
    const types = after.map((e) => e.type);
    // Whether it noticed its lapsed lease first (role.fenced) or the new primary first, its
    // application was stopped before it became the backup.
    const stopHook = after.findIndex((e) => e.type === 'hook.ran' && e.hook === 'stop');
    assert.ok(stopHook >= 0 && stopHook < types.indexOf('role.demoted'), `the stop hook ran on waking, before stepping down: ${types.join(', ')}`);
    assert.ok(!types.includes('role.acting'), `the old primary never acted again after waking: ${types.join(', ')}`);
    assert.equal((await primary.status()).node.role, 'backup');
  });

  test('maintenance mode (set on the primary, holds for the pair): no failover when the primary dies', async () => {
    const { primary, backup } = await trioWithHooks();
    assert.equal((await primary.cli('maintenance', 'on')).code, 0);
    await waitFor('the backup to hear of maintenance', async () => ((await backup.status()).node.maintenance ? true : undefined), 5000);
    const since = backup.events.length;
    await primary.kill();
    await backup.waitForEvent('failover.waiting', since, FailoverWithinMs);
    await sleep(2000);
    assert.equal((await backup.status()).node.role, 'backup');
    assert.equal(backup.events.slice(since).filter((e) => e.type === 'failover.done').length, 0);
  });

  test('failover policy "ask" (set on the backup, holds for the pair): a switchover still runs, but the backup does not take over by itself; --force does', async () => {
    const { primary, backup } = await trioWithHooks();
    const set = await backup.cli('failover-policy', 'ask');
    assert.equal(set.code, 0, set.stderr);
    await waitFor('the primary to hear of the policy', async () => ((await primary.status()).node.failoverPolicy === 'ask' ? true : undefined), 5000);
    // Unlike maintenance mode, a planned switchover is not held back: swap, and swap back.
    assert.equal((await primary.cli('switchover')).code, 0);
    assert.equal((await backup.status()).node.role, 'primary');
    assert.equal((await backup.cli('switchover')).code, 0);
    assert.equal((await primary.status()).node.role, 'primary');
    const since = backup.events.length;
    await primary.kill();
    const waiting = await backup.waitForEvent('failover.waiting', since, FailoverWithinMs);
    assert.equal(waiting.reason, 'policy');
    await sleep(2000);
    assert.equal((await backup.status()).node.role, 'backup');
    const forced = await backup.cli('failover', '--force');
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal((await backup.status()).node.role, 'primary');
  });
});

describe('without a witness', { concurrency: false }, () => {
  let nodes: TestNode[] = [];
  afterEach(async () => {
    await Promise.all(nodes.map((node) => node.destroy()));
    nodes = [];
  });

  test('the backup says the primary is down and waits; failover --force makes it primary', async () => {
    const [primary, backup] = await startPair();
    nodes = [primary, backup];
    const refused = await backup.cli('failover', '--force');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is up/);
    const since = backup.events.length;
    await primary.kill();
    const needed = await backup.waitForEvent('failover.needed', since, 5000);
    assert.match(needed.message, /failover --force/);
    await sleep(1000);
    assert.equal((await backup.status()).node.role, 'backup', 'no failover by itself');
    const forced = await backup.cli('failover', '--force', '--json');
    assert.equal(forced.code, 0, forced.stderr);
    const result = JSON.parse(forced.stdout) as { role: string; epoch: number };
    assert.equal(result.role, 'primary');
    assert.equal(result.epoch, 2);
  });

  test('config set: a lease too short for the stop budget is refused with one clear line; good values are kept', async () => {
    const [primary, backup] = await startPair();
    nodes = [primary, backup];
    const bad = await primary.cli('config', 'set', 'leaseMs', '400');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /too short/);
    assert.equal(bad.stderr.trim().split('\n').length <= 2, true, bad.stderr);
    const good = await primary.cli('config', 'set', 'leaseMs', '3000', '--json');
    assert.equal(good.code, 0, good.stderr);
    assert.equal((JSON.parse(good.stdout) as { leaseMs: number }).leaseMs, 3000);
    const unknown = await primary.cli('config', 'set', 'colour', 'blue');
    assert.notEqual(unknown.code, 0);
    assert.match(unknown.stderr, /not a setting/);
  });
});
