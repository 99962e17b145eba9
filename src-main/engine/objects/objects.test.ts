/**
 * A node's protected objects turning round when the roles swap, without a peer: what a
 * deposed primary does with the changes its backup never acknowledged, and what happens to a
 * message from the new primary that arrives while the objects are being reversed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Store } from '../store/store.js';
import { ObjectStore } from './object-store.js';
import { ProtectedObjects } from './objects.js';
import type { ReplicationMessage } from './folder/channel.js';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

test('a deposed primary sets aside what its backup never acknowledged, and asks the new primary for everything; an announcement arriving mid-reverse is not lost', async () => {
  const root = mkdtempSync(join(tmpdir(), 'understudy-objects-'));
  const home = join(root, 'home');
  const folder = join(root, 'folder');
  mkdirSync(home);
  mkdirSync(folder);
  writeFileSync(join(folder, 'kept.txt'), 'acknowledged long ago');
  const store = Store.open(home);
  const sent: ReplicationMessage[] = [];
  let epoch = 1;
  const objects = new ProtectedObjects({
    home,
    db: store.database,
    log: pino({ level: 'silent' }),
    event: () => {},
    source: { rescanMs: 3600_000 },
    peer: {
      send: (message) => (sent.push(message), true),
      drained: () => Promise.resolve(),
      backedUp: () => false,
      connected: () => false,
      epoch: () => epoch,
    },
  });
  const journal = new ObjectStore(store.database);
  try {
    await objects.start();
    const { id } = await objects.protectFolder('primary', folder, join(root, 'copy'), []);
    for (let i = 0; i < 100 && journal.getObject(id)!.lastSeq === 0; i++) await sleep(20);
    // The backup acknowledged everything so far, then this node wrote one more file, unacknowledged.
    journal.setAcked(id, journal.getObject(id)!.lastSeq);
    writeFileSync(join(folder, 'diverged.txt'), 'written after the backup last acknowledged');
    for (let i = 0; i < 100 && !journal.entry(id, 'diverged.txt'); i++) await sleep(20);
    assert.ok(journal.entry(id, 'diverged.txt'), 'the watcher journaled the new file');

    // A later primary exists: this node becomes its backup. Its announcement comes while we reverse.
    epoch = 2;
    const reversing = objects.reverse('backup', { setAsideUnacknowledged: true });
    objects.onMessage({ t: 'folder.object', epoch: 2, position: { epoch: 2, seq: 0 }, objectId: id, source: join(root, 'copy'), target: folder, removed: false, kind: 'folder' }, Buffer.alloc(0));
    await reversing;
    for (let i = 0; i < 50 && !sent.some((m) => m.t === 'folder.want'); i++) await sleep(10);

    assert.ok(existsSync(join(folder, 'kept.txt')), 'acknowledged files stay');
    assert.ok(!existsSync(join(folder, 'diverged.txt')), 'the unacknowledged file left the live copy');
    const versions = join(home, 'versions', id);
    const kept = readdirSync(versions, { recursive: true }).map(String);
    assert.ok(kept.some((path) => path.endsWith('diverged.txt')), `it is in the versions area (${kept.join(', ')})`);
    assert.equal(journal.entry(id, 'diverged.txt'), null, 'and out of the index');
    const want = sent.find((m): m is Extract<ReplicationMessage, { t: 'folder.want' }> => m.t === 'folder.want');
    assert.ok(want, 'the announcement that came during the reverse was answered with a want (it was dropped, or crashed the node)');
    assert.equal(want.position.seq, 0, 'the new primary is asked for everything: our positions mean nothing to its journal');
  } finally {
    await objects.stop();
    store.close();
    rmSync(root, { recursive: true, force: true });
  }
});
