/**
 * The surviving node reports its peer down within 1 s at the default settings after a
 * crash (kill -9: its sockets close), a freeze (SIGSTOP: only missed beats tell) and a
 * network cut (nftables drops: only missed beats tell), and sees it up again afterwards
 * without pairing again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { run, startPair, TestNode, waitPeerUp } from '../support/harness.js';
import type { EventRecord } from '../../src-main/contract/control.js';

/** The Done-when bound for a down verdict at default settings. */
const DownWithinMs = 1000;
const UpAgainWithinMs = 5000;

function msSince(actionAt: number, event: EventRecord): number {
  return Date.parse(event.at) - actionAt;
}


async function hasNft(): Promise<boolean> {
  try {
    await run('nft', ['--version']);
    return process.getuid?.() === 0;
  } catch {
    return false;
  }
}

describe('failure detection', () => {
  let primary: TestNode;
  let backup: TestNode;

  before(async () => {
    [primary, backup] = await startPair();
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  for (const victimRole of ['backup', 'primary'] as const) {
    test(`kill -9 of the ${victimRole}: the other side reports it down within 1 s, then up after a restart`, async () => {
      const victim = victimRole === 'backup' ? backup : primary;
      const survivor = victimRole === 'backup' ? primary : backup;
      const mark = survivor.events.length;
      const killedAt = Date.now();
      await victim.kill();
      const down = await survivor.waitForEvent('peer.down', mark, 3000);
      assert.ok(msSince(killedAt, down) < DownWithinMs, `down after ${msSince(killedAt, down)} ms`);
      await victim.serve();
      await Promise.all([waitPeerUp(survivor, UpAgainWithinMs), waitPeerUp(victim, UpAgainWithinMs)]);
    });

    test(`SIGSTOP of the ${victimRole}: the other side reports it down within 1 s, then up after SIGCONT`, async () => {
      const victim = victimRole === 'backup' ? backup : primary;
      const survivor = victimRole === 'backup' ? primary : backup;
      const mark = survivor.events.length;
      const stoppedAt = Date.now();
      victim.signal('SIGSTOP');
      try {
        const down = await survivor.waitForEvent('peer.down', mark, 3000);
        assert.ok(msSince(stoppedAt, down) < DownWithinMs, `down after ${msSince(stoppedAt, down)} ms`);
        const suspect = survivor.events.slice(mark).find((e) => e.type === 'peer.suspect');
        assert.ok(suspect && Date.parse(suspect.at) <= Date.parse(down.at), 'suspect is reported before down');
      } finally {
        victim.signal('SIGCONT');
      }
      await Promise.all([waitPeerUp(survivor, UpAgainWithinMs), waitPeerUp(victim, UpAgainWithinMs)]);
    });
  }

  test('packets dropped with nftables: both sides report down within 1 s, and up once the drop is removed', async (t) => {
    if (!(await hasNft())) {
      if (process.env.CI) assert.fail('nftables and root are required in CI (.ci/run installs nftables)');
      t.skip('needs root and nft');
      return;
    }
    const table = `understudy_test_${process.pid}`;
    const ports = `{ ${[primary.port, primary.port + 1, backup.port, backup.port + 1].join(', ')} }`;
    const marks = [primary.events.length, backup.events.length];
    await run('nft', ['add', 'table', 'inet', table]);
    try {
      await run('nft', ['add', 'chain', 'inet', table, 'input', '{ type filter hook input priority -10 ; policy accept ; }']);
      const cutAt = Date.now();
      // Every packet to or from either node's listening ports: both directions of every connection between them.
      await run('nft', ['add', 'rule', 'inet', table, 'input', 'tcp', 'dport', ports, 'drop']);
      await run('nft', ['add', 'rule', 'inet', table, 'input', 'tcp', 'sport', ports, 'drop']);
      const [downA, downB] = await Promise.all([primary.waitForEvent('peer.down', marks[0], 3000), backup.waitForEvent('peer.down', marks[1], 3000)]);
      assert.ok(msSince(cutAt, downA) < DownWithinMs, `primary saw down after ${msSince(cutAt, downA)} ms`);
      assert.ok(msSince(cutAt, downB) < DownWithinMs, `backup saw down after ${msSince(cutAt, downB)} ms`);
      // Still down while the cut lasts: no flapping back up.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      assert.equal(await primary.peerState(), 'down');
      assert.equal(await backup.peerState(), 'down');
    } finally {
      await run('nft', ['delete', 'table', 'inet', table]);
    }
    await Promise.all([waitPeerUp(primary, UpAgainWithinMs), waitPeerUp(backup, UpAgainWithinMs)]);
    const status = await primary.status();
    assert.equal(status.node.role, 'primary');
    assert.equal(status.peers.length, 1);
  });
});

describe('heartbeats run off the main thread', () => {
  let primary: TestNode;
  let backup: TestNode;

  before(async () => {
    // UNDERSTUDY_DEV=1 enables the development command that stalls a node's main thread.
    [primary, backup] = await startPair({ primary: { UNDERSTUDY_DEV: '1' } });
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  test('a 3 s stall of the primary main thread (as a long SQLite call would be) is not a missed beat', async () => {
    const marks = [primary.events.length, backup.events.length];
    const { blockedMs } = await primary.call('dev:block-main', { ms: 3000 });
    assert.ok(blockedMs >= 3000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const unwanted = (events: EventRecord[]) => events.filter((e) => e.type === 'peer.down' || e.type === 'peer.suspect').map((e) => e.message);
    assert.deepEqual(unwanted(backup.events.slice(marks[1])), [], 'the backup kept seeing the primary up');
    assert.deepEqual(unwanted(primary.events.slice(marks[0])), [], 'the primary kept seeing the backup up');
    assert.equal(await backup.peerState(), 'up');
    assert.equal(await primary.peerState(), 'up');
  });

  test('the development stall is refused on a node not started in development mode', async () => {
    await assert.rejects(backup.call('dev:block-main', { ms: 10 }), /development command/);
  });
});
