/**
 * The folder source's bookkeeping of where each change is (capture, send, apply), of what
 * the backup acknowledged (throughput), and of a pause — against a fake backup that only
 * records what it is sent and acknowledges when told to.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Store } from '../../store/store.js';
import { newObject, ObjectStore } from '../object-store.js';
import type { ReplicationMessage } from './channel.js';
import { Hasher } from './hasher.js';
import { FolderSource } from './source.js';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

test('stages: captured, sent, acknowledged; a pause holds changes in the send stage and a resume sends them', async () => {
  const root = mkdtempSync(join(tmpdir(), 'understudy-stages-'));
  const home = join(root, 'home');
  const folder = join(root, 'folder');
  mkdirSync(home);
  mkdirSync(folder);
  writeFileSync(join(folder, 'first.txt'), 'x'.repeat(1000));
  const store = Store.open(home);
  const objects = new ObjectStore(store.database);
  const hasher = new Hasher();
  const object = newObject('folder', { id: 'f-0000000002', side: 'source', source: folder, target: join(root, 'copy'), excludes: [] });
  objects.addObject(object);
  const sent: ReplicationMessage[] = [];
  const peer = { send: (m: ReplicationMessage) => (sent.push(m), true), drained: () => Promise.resolve(), backedUp: () => false, connected: () => true, epoch: () => 1 };
  const changesSent = () => sent.filter((m): m is Extract<ReplicationMessage, { t: 'folder.changes' }> => m.t === 'folder.changes');
  // A long settle, so that what the watcher reported stays visibly in the capture stage.
  const source = new FolderSource(object, objects, hasher, peer, { log: pino({ level: 'silent' }), event: () => {} }, { settleMs: 600, rescanMs: 3600_000 });
  const ack = (seq: number) => source.onMessage({ t: 'folder.ack', epoch: 1, position: { epoch: 1, seq }, objectId: object.id }, Buffer.alloc(0));
  try {
    await source.start();
    let status = source.status();
    assert.deepEqual(status.stages?.send, { lagMs: status.stages!.send.lagMs, changes: 1 }, 'journaled, nothing sent before the backup says what it holds');
    assert.equal(status.stages?.apply.changes, 0);

    // The backup holds nothing: the change goes out and waits to be applied.
    source.onMessage({ t: 'folder.want', epoch: 1, position: { epoch: 1, seq: 0 }, objectId: object.id }, Buffer.alloc(0));
    await until('the first change to be sent', () => changesSent().length === 1);
    status = source.status();
    assert.equal(status.stages?.send.changes, 0);
    assert.equal(status.stages?.apply.changes, 1);
    assert.equal(status.pending, 1);

    ack(changesSent()[0]!.position.seq);
    status = source.status();
    assert.deepEqual(status.stages, { capture: { lagMs: 0, changes: 0 }, send: { lagMs: 0, changes: 0 }, apply: { lagMs: 0, changes: 0 } });
    assert.equal(status.state, 'in-sync');
    assert.equal(status.throughput?.bytesPerSec, 100, '1000 bytes acknowledged over a 10 s window');
    assert.equal(status.throughput?.changesPerSec, 0.1);

    // Paused: new files are captured, then journaled, and stay in the send stage.
    source.setPaused(true);
    assert.equal(objects.getObject(object.id)?.paused, true, 'the pause is in the store (it survives a restart)');
    writeFileSync(join(folder, 'a.txt'), 'a');
    writeFileSync(join(folder, 'b.txt'), 'b');
    await until('the watcher to report them', () => (source.status().stages?.capture.changes ?? 0) >= 2);
    await sleep(100);
    assert.ok(source.status().stages!.capture.lagMs >= 90, `capture lag grows while settling (${source.status().stages!.capture.lagMs} ms)`);
    await until('them to be journaled', () => source.status().stages?.send.changes === 2);
    status = source.status();
    assert.equal(status.state, 'paused');
    assert.equal(status.paused, true);
    assert.equal(status.pending, 2);
    assert.equal(status.stages?.capture.changes, 0);
    assert.ok(status.lagMs >= 1, 'lag grows while paused');
    assert.equal(changesSent().length, 1, 'nothing is sent while paused');

    source.setPaused(false);
    await until('the held changes to be sent', () => changesSent().length === 2);
    status = source.status();
    assert.equal(status.stages?.send.changes, 0);
    assert.equal(status.stages?.apply.changes, 2);
    assert.equal(status.paused, false);
    ack(changesSent()[1]!.position.seq);
    assert.equal(source.status().state, 'in-sync');
    assert.equal(source.status().throughput?.changesPerSec, 0.3);
  } finally {
    await source.stop();
    await hasher.close();
    store.close();
    rmSync(root, { recursive: true, force: true });
  }
});
