/**
 * The primary's folder source, on its own (no peer): what it journals when it starts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Store } from '../../store/store.js';
import { newObject, ObjectStore } from '../object-store.js';
import { Hasher } from './hasher.js';
import { FolderSource } from './source.js';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

test('a file created while the first scan runs is journaled at once, not at the next periodic rescan', async () => {
  const root = mkdtempSync(join(tmpdir(), 'understudy-source-'));
  const home = join(root, 'home');
  const folder = join(root, 'folder');
  mkdirSync(home);
  mkdirSync(join(folder, 'bulk'), { recursive: true });
  // Enough files that the first scan's walk takes a while after it has read the top folder.
  for (let i = 0; i < 20_000; i++) writeFileSync(join(folder, 'bulk', `f${i}`), `${i}`);
  const store = Store.open(home);
  const objects = new ObjectStore(store.database);
  const hasher = new Hasher();
  const object = newObject('folder', { id: 'f-0000000001', side: 'source', source: folder, target: join(root, 'copy'), excludes: [] });
  objects.addObject(object);
  const peer = { send: () => false, drained: () => Promise.resolve(), backedUp: () => false, connected: () => false, epoch: () => 1 };
  // The periodic rescan is an hour away: only the watcher can catch the late file.
  const source = new FolderSource(object, objects, hasher, peer, { log: pino({ level: 'silent' }), event: () => {} }, { rescanMs: 3600_000 });
  try {
    const starting = source.start();
    // The walk has read the top folder and is busy in bulk/: the scan will not see this file.
    await sleep(150);
    const scanDone = (objects.getObject(object.id)?.lastSeq ?? 0) > 0;
    writeFileSync(join(folder, 'late.txt'), 'created while the first scan runs');
    await starting;
    assert.ok(!scanDone, 'the first scan ended before the file was created: the test proves nothing (give it more files)');
    for (let i = 0; i < 100 && !objects.entry(object.id, 'late.txt'); i++) await sleep(20);
    assert.ok(objects.entry(object.id, 'late.txt'), 'late.txt must be journaled by the watcher (it was missed until the next full rescan)');
  } finally {
    await source.stop();
    await hasher.close();
    store.close();
    rmSync(root, { recursive: true, force: true });
  }
});
