/**
 * Two fresh nodes pair with a code and see each other up; the pair survives restarts of
 * either side without pairing again. Real processes, real sockets, driven by the CLI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EventRecord, StatusReport } from '../../src-main/contract/control.js';
import { pairNodes, TestNode, waitFor } from '../support/harness.js';

const PairingCodePattern = /[A-Z2-7]{4}(-[A-Z2-7]{4}){7}/;
const IsoUtc = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

async function statusJson(node: TestNode): Promise<StatusReport> {
  const result = await node.cli('status', '--json');
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as StatusReport;
}

describe('pairing two nodes on loopback', () => {
  let primary: TestNode;
  let backup: TestNode;

  before(async () => {
    [primary, backup] = await Promise.all([TestNode.create('alpha'), TestNode.create('beta')]);
    await Promise.all([primary.serve(), backup.serve()]);
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  test('unpaired nodes are standalone at epoch 0 with no peers', async () => {
    const status = await statusJson(primary);
    assert.equal(status.node.role, 'standalone');
    assert.equal(status.node.epoch, 0);
    assert.equal(status.node.name, 'alpha');
    assert.deepEqual(status.peers, []);
    assert.deepEqual(status.objects, []);
  });

  test('pairing with a code makes both sides see each other up, with an RTT, within 2 s', async () => {
    const started = Date.now();
    const paired = await pairNodes(primary, backup);
    assert.equal(paired.code, 0, paired.stderr);
    assert.match(paired.stdout, /Paired with 'alpha'/);
    const bothUp = async () => {
      const [a, b] = await Promise.all([primary.status(), backup.status()]);
      return a.peers[0]?.state === 'up' && b.peers[0]?.state === 'up' && a.peers[0].rttMs !== null && b.peers[0].rttMs !== null ? true : undefined;
    };
    await waitFor('both peers up', bothUp, 2000, 10);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 2000, `both up after ${elapsed} ms`);
  });

  test('status --json from both sides names the pair the same way', async () => {
    const [a, b] = await Promise.all([statusJson(primary), statusJson(backup)]);
    assert.equal(a.node.role, 'primary');
    assert.equal(b.node.role, 'backup');
    assert.equal(a.node.epoch, 1);
    assert.equal(b.node.epoch, 1);
    const [peerOfA, peerOfB] = [a.peers[0]!, b.peers[0]!];
    assert.equal(a.peers.length, 1);
    assert.equal(b.peers.length, 1);
    assert.equal(peerOfA.id, b.node.id);
    assert.equal(peerOfB.id, a.node.id);
    assert.equal(peerOfA.name, 'beta');
    assert.equal(peerOfB.name, 'alpha');
    assert.equal(peerOfA.role, 'backup');
    assert.equal(peerOfB.role, 'primary');
    assert.equal(peerOfB.address, primary.address);
    assert.equal(peerOfA.address, backup.address);
    for (const peer of [peerOfA, peerOfB]) {
      assert.equal(peer.state, 'up');
      assert.equal(typeof peer.rttMs, 'number');
      const rtt = peer.rttMs ?? -1;
      assert.ok(Number.isInteger(rtt) && rtt >= 1 && rtt < 100, `rttMs ${peer.rttMs}`);
      assert.match(peer.lastSeenAt ?? '', IsoUtc);
      assert.equal(peer.link, 'connected');
    }
  });

  test('events record the pairing and the peer coming up', async () => {
    for (const node of [primary, backup]) {
      const result = await node.cli('events', '--json');
      assert.equal(result.code, 0, result.stderr);
      const events = JSON.parse(result.stdout) as EventRecord[];
      const types = events.map((e) => e.type);
      assert.ok(types.includes('pair.completed'), types.join());
      assert.ok(types.includes('peer.up'), types.join());
      for (const event of events) {
        assert.match(event.at, IsoUtc);
        assert.equal(typeof event.message, 'string');
      }
      // Oldest first.
      assert.deepEqual([...events].sort((x, y) => x.id - y.id), events);
      // The pairing code is a secret: it never reaches the event log.
      assert.ok(!JSON.stringify(events).match(PairingCodePattern), 'a pairing code appears in the events');
    }
  });

  test('the log files never hold a pairing code', () => {
    for (const node of [primary, backup]) {
      const dir = join(node.home, 'logs');
      const text = readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')).join('');
      assert.ok(text.includes('pair'), 'the log mentions the pairing');
      assert.doesNotMatch(text, PairingCodePattern);
    }
  });

  for (const side of ['backup', 'primary'] as const) {
    test(`a clean restart of the ${side} brings the link back without pairing again`, async () => {
      const restarted = side === 'backup' ? backup : primary;
      const other = side === 'backup' ? primary : backup;
      const mark = other.events.length;
      assert.equal(await restarted.stop(), 0, 'serve exits 0 after SIGTERM');
      await other.waitForEvent('peer.down', mark, 3000);
      await restarted.serve();
      await waitFor(`${other.name} to see ${restarted.name} up again`, async () => ((await other.peerState()) === 'up' ? true : undefined), 5000);
      await waitFor(`${restarted.name} to see ${other.name} up again`, async () => ((await restarted.peerState()) === 'up' ? true : undefined), 5000);
      // The data link follows the heartbeats by a moment: wait for it rather than sample it once.
      const status = await waitFor('the data link to reconnect', async () => {
        const report = await statusJson(restarted);
        return report.peers[0]?.link === 'connected' ? report : undefined;
      }, 5000);
      assert.equal(status.node.role, side);
      assert.equal(status.node.epoch, 1);
    });
  }
});
