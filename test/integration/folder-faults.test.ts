/**
 * Folder replication when things go wrong, with two real nodes: the source folder vanishes,
 * the backup's disk fills up, names that are not UTF-8, very long paths, many files in one
 * folder, a live SQLite database, hand-made changes on the backup's copy, and kill -9 of the
 * primary in the middle of a large file.
 *
 * Both nodes run with UNDERSTUDY_RESCAN_MS=1000: the primary rescans, and the backup verifies
 * its copy, every second. Each test protects its own folder and unprotects it at the end.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { EventRecord, ObjectStatus } from '../../src-main/contract/control.js';
import { pairNodes, run, sleep, tempDir, TestNode, waitFor, waitPeerUp } from '../support/harness.js';
import { findTemps, manifest, manifestDiff } from '../support/tree.js';

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
const Env = { UNDERSTUDY_RESCAN_MS: '1000' };
const isRoot = process.getuid?.() === 0;


async function objectStatus(node: TestNode, id: string): Promise<ObjectStatus | undefined> {
  return (await node.status()).objects.find((o) => o.id === id);
}


/** Every file under root (relative paths), for looking through the versions area. */
function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of readdirSync(join(root, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(path);
      else out.push(path);
    }
  };
  walk('');
  return out;
}

function ofObject(events: EventRecord[], type: string, id: string, since: number): EventRecord[] {
  return events.slice(since).filter((e) => e.type === type && e.object === id);
}

describe('folder replication faults', { concurrency: false }, () => {
  let primary: TestNode;
  let backup: TestNode;

  before(async () => {
    [primary, backup] = await Promise.all([TestNode.create('alpha'), TestNode.create('beta')]);
    await Promise.all([primary.serve([], Env), backup.serve([], Env)]);
    const paired = await pairNodes(primary, backup);
    assert.equal(paired.code, 0, paired.stderr);
    await Promise.all([waitPeerUp(primary), waitPeerUp(backup)]);
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  /**
   * A fresh work dir with source/ created, and `defer` for cleanups: they run after the test,
   * last deferred first, and the work dir is removed after all of them.
   */
  function workDir(t: TestContext, name: string): { work: string; source: string; target: string; defer: (cleanup: () => unknown) => void } {
    const work = tempDir(`faults-${name}`);
    const source = join(work, 'source');
    mkdirSync(source);
    const cleanups: (() => unknown)[] = [() => rmSync(work, { recursive: true, force: true })];
    t.after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    });
    return { work, source, target: join(work, 'target'), defer: (cleanup) => cleanups.push(cleanup) };
  }

  /** Protects source (to target) on the primary and returns the object id. */
  async function protect(source: string, target: string, ...extra: string[]): Promise<string> {
    const result = await primary.cli('protect', 'folder', source, '--to', target, ...extra);
    assert.equal(result.code, 0, result.stderr);
    const id = result.stdout.trim().split('\n').at(-1)!;
    assert.match(id, /^f-[0-9a-f]{10}$/);
    return id;
  }

  /** Stops protecting id and waits until the backup dropped it too (best effort). */
  async function unprotect(id: string): Promise<void> {
    if (!primary.process) return;
    await primary.cli('unprotect', id);
    await waitFor(`the backup to drop ${id}`, async () => ((await backup.status()).objects.some((o) => o.id === id) ? undefined : true), 10_000).catch(() => undefined);
  }

  /** Waits until the primary reports id in sync with nothing pending and the trees are identical. */
  async function converge(id: string, source: string, target: string, what: string, timeoutMs = 30_000): Promise<void> {
    let last = '';
    try {
      await waitFor(
        what,
        async () => {
          const status = await objectStatus(primary, id);
          if (status?.state !== 'in-sync' || status.pending !== 0) {
            last = `primary: ${JSON.stringify(status)}`;
            return undefined;
          }
          const diff = manifestDiff(manifest(source), manifest(target));
          last = diff.slice(0, 10).join('; ');
          return diff.length === 0 ? true : undefined;
        },
        timeoutMs,
        100,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; last seen: ${last}`);
    }
  }

  test('a source folder that disappears: error on the primary, the copy untouched, recovery when it is back', async (t) => {
    const { work, source, target, defer } = workDir(t, 'vanish');
    mkdirSync(join(source, 'docs'));
    writeFileSync(join(source, 'docs', 'a.txt'), 'alpha');
    writeFileSync(join(source, 'b.bin'), randomBytes(200_000));
    const id = await protect(source, target);
    defer(() => unprotect(id));
    await converge(id, source, target, 'the initial sync');
    const copyBefore = manifest(target);
    const since = primary.events.length;

    const away = join(work, 'source-away');
    renameSync(source, away);
    const error = await primary.waitForEvent('folder.error', since, 10_000);
    assert.equal(error.object, id);
    const failing = await waitFor('the primary to report the object in error', async () => {
      const status = await objectStatus(primary, id);
      return status?.state === 'error' ? status : undefined;
    });
    assert.ok(failing.error && failing.error.length > 0, 'the status says what is wrong');
    assert.match(failing.error, new RegExp(source.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    // A change made meanwhile (in the moved folder) must arrive once the folder is back.
    writeFileSync(join(away, 'docs', 'a.txt'), 'alpha, edited while the folder was away');
    // Two rescans of the primary and two verifications of the backup go by.
    await sleep(2500);
    assert.deepEqual(manifestDiff(copyBefore, manifest(target)), [], "the backup's copy is untouched");
    assert.equal((await objectStatus(primary, id))?.state, 'error', 'still in error while the folder is away');
    assert.equal(ofObject(primary.events, 'folder.error', id, since).length, 1, 'the error is reported once, not at every rescan');

    renameSync(away, source);
    await primary.waitForEvent('folder.recovered', since, 10_000);
    writeFileSync(join(source, 'after.txt'), 'written after the folder came back');
    await converge(id, source, target, 'the trees to converge after the folder came back');
    assert.equal(readFileSync(join(target, 'docs', 'a.txt'), 'utf8'), 'alpha, edited while the folder was away');
  });

  test('disk full on the backup: error with ENOSPC, the source untouched, resumes by itself when space is freed', { skip: isRoot ? false : 'needs root to mount a tmpfs' }, async (t) => {
    const { work, source, defer } = workDir(t, 'full');
    const mount = join(work, 'small');
    mkdirSync(mount);
    await run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mount]);
    const target = join(mount, 'dest');
    const filler = join(mount, 'filler');
    let id: string | null = null;
    defer(async () => {
      if (id) await unprotect(id);
      await run('umount', [mount]).catch(() => run('umount', ['-l', mount]));
    });
    writeFileSync(filler, Buffer.alloc(6 * 1024 * 1024, 1));
    writeFileSync(join(source, 'small.txt'), 'fits');
    id = await protect(source, target);
    await converge(id, source, target, 'the initial sync');
    const since = backup.events.length;

    const big = randomBytes(4 * 1024 * 1024);
    writeFileSync(join(source, 'big.bin'), big);
    const sourceBefore = manifest(source);
    const failing = await waitFor(
      'the backup to report the object in error',
      async () => {
        const status = await objectStatus(backup, id!);
        return status?.state === 'error' ? status : undefined;
      },
      20_000,
    );
    assert.match(failing.error ?? '', /ENOSPC|space/i, `the status says the disk is full: ${failing.error}`);
    const event = await backup.waitForEvent('folder.error', since, 10_000);
    assert.equal(event.object, id);
    assert.match(event.message, /ENOSPC|space/i);
    assert.deepEqual(manifestDiff(sourceBefore, manifest(source)), [], "the primary's source is untouched");
    assert.ok(readFileSync(join(source, 'big.bin')).equals(big));
    assert.equal(existsSync(join(target, 'big.bin')), false);

    // Retried every 2 s while the disk stays full, and reported once.
    await sleep(2500);
    assert.equal((await objectStatus(backup, id))?.state, 'error');
    assert.equal(ofObject(backup.events, 'folder.error', id, since).length, 1, 'the error is reported once, not at every retry');

    unlinkSync(filler);
    await converge(id, source, target, 'replication to resume once space was freed', 30_000);
    assert.deepEqual(findTemps(target), [], 'no temp files are left behind');
    const recovered = await backup.waitForEvent('folder.recovered', since, 10_000);
    assert.equal(recovered.object, id);
    await waitFor('the backup to leave the error state', async () => ((await objectStatus(backup, id!))?.state === 'in-sync' ? true : undefined), 10_000);
  });

  test('names that are not valid UTF-8 are reported and left out; everything else replicates', async (t) => {
    const { source, target, defer } = workDir(t, 'utf8');
    mkdirSync(join(source, 'odd'));
    const badName = Buffer.concat([Buffer.from(join(source, 'odd') + '/'), Buffer.from([0x66, 0xff, 0x2e, 0x74])]);
    writeFileSync(badName, 'a name in Latin-1');
    writeFileSync(join(source, 'odd', 'ok.txt'), 'fine');
    writeFileSync(join(source, 'top.txt'), 'top');
    const since = primary.events.length;
    const id = await protect(source, target);
    defer(() => unprotect(id));

    const skipped = await primary.waitForEvent('folder.skipped', since, 10_000);
    assert.equal(skipped.object, id);
    assert.equal(skipped.reason, 'not-utf8');
    await waitFor('the primary to be in sync', async () => ((await objectStatus(primary, id))?.state === 'in-sync' ? true : undefined), 20_000);
    assert.ok(((await objectStatus(primary, id))?.skipped ?? 0) >= 1, 'status counts the skipped path');
    assert.equal(readFileSync(join(target, 'odd', 'ok.txt'), 'utf8'), 'fine');
    assert.equal(readFileSync(join(target, 'top.txt'), 'utf8'), 'top');
    assert.deepEqual(readdirSync(join(target, 'odd')), ['ok.txt'], 'nothing else arrived in odd/');

    // Without the bad name, the trees are identical.
    unlinkSync(badName);
    await converge(id, source, target, 'the trees to match without the bad name');
  });

  test('paths over 1,000 characters (200-character names) replicate', async (t) => {
    const { source, target, defer } = workDir(t, 'long');
    const parts = ['a', 'b', 'c', 'd', 'e'].map((c) => c.repeat(200));
    const dir = join(source, ...parts);
    mkdirSync(dir, { recursive: true });
    const rel = [...parts, `${'f'.repeat(196)}.txt`].join('/');
    assert.ok(rel.length > 1000, `relative path is ${rel.length} characters`);
    writeFileSync(join(source, rel), 'at the bottom of a long path');
    writeFileSync(join(dir, 'beside.bin'), randomBytes(100_000));
    const id = await protect(source, target);
    defer(() => unprotect(id));
    await converge(id, source, target, 'the long paths to replicate');
    assert.equal(readFileSync(join(target, rel), 'utf8'), 'at the bottom of a long path');
  });

  test('10,000 small files in one folder replicate', async (t) => {
    const { source, target, defer } = workDir(t, 'many');
    const dir = join(source, 'many');
    mkdirSync(dir);
    for (let i = 0; i < 10_000; i++) writeFileSync(join(dir, `file-${String(i).padStart(5, '0')}.txt`), `file ${i}\n`.repeat(1 + (i % 7)));
    const id = await protect(source, target);
    defer(() => unprotect(id));
    await converge(id, source, target, '10,000 files to replicate', 75_000);
    assert.equal(readdirSync(join(target, 'many')).length, 10_000);
  });

  test('a live SQLite database is left out and reported; a plain file beside it replicates', async (t) => {
    const { source, target, defer } = workDir(t, 'sqlite');
    const dbPath = join(source, 'shop.db');
    const db = new Database(dbPath);
    defer(() => db.close()); // after unprotect (deferred later): closing checkpoints and removes the -wal
    assert.equal(db.pragma('journal_mode = WAL', { simple: true }), 'wal');
    db.exec('CREATE TABLE sales (id INTEGER PRIMARY KEY, item TEXT)');
    db.prepare('INSERT INTO sales (item) VALUES (?)').run('coffee');
    assert.ok(existsSync(`${dbPath}-wal`), 'the database has a -wal file');
    writeFileSync(join(source, 'notes.txt'), 'a plain file beside the database');
    const since = primary.events.length;
    const id = await protect(source, target);
    defer(() => unprotect(id));

    const skipped = await primary.waitForEvent('folder.skipped', since, 10_000);
    assert.equal(skipped.object, id);
    assert.equal(skipped.path, 'shop.db');
    assert.equal(skipped.reason, 'excluded-sqlite');
    assert.match(skipped.message, /shop\.db/);
    await waitFor('notes.txt to replicate', () => (existsSync(join(target, 'notes.txt')) ? true : undefined), 20_000);
    assert.equal(readFileSync(join(target, 'notes.txt'), 'utf8'), 'a plain file beside the database');
    // More writes while protected, and a few rescans: the database stays out.
    db.prepare('INSERT INTO sales (item) VALUES (?)').run('tea');
    await sleep(2200);
    const status = await objectStatus(primary, id);
    assert.equal(status?.state, 'in-sync');
    assert.ok((status?.skipped ?? 0) >= 1);
    for (const name of ['shop.db', 'shop.db-wal', 'shop.db-shm']) assert.equal(existsSync(join(target, name)), false, `${name} is not on the backup`);
    assert.equal(ofObject(primary.events, 'folder.skipped', id, since).length, 1, 'reported once, not at every rescan');
  });

  test("hand-made changes on the backup's copy are put back, and the local versions kept", async (t) => {
    const { source, target, defer } = workDir(t, 'hand');
    mkdirSync(join(source, 'sub'));
    writeFileSync(join(source, 'edited.txt'), 'the primary version');
    writeFileSync(join(source, 'sub', 'deleted.txt'), 'deleted on the backup by hand');
    writeFileSync(join(source, 'untouched.txt'), 'left alone');
    const id = await protect(source, target);
    defer(() => unprotect(id));
    await converge(id, source, target, 'the initial sync');
    const since = backup.events.length;

    writeFileSync(join(target, 'edited.txt'), 'changed by hand on the backup');
    writeFileSync(join(target, 'sub', 'extra.txt'), 'added by hand on the backup');
    unlinkSync(join(target, 'sub', 'deleted.txt'));

    const repaired = await backup.waitForEvent('audit.repaired', since, 15_000);
    assert.equal(repaired.object, id);
    await converge(id, source, target, 'the copy to be put back');
    assert.equal(readFileSync(join(target, 'edited.txt'), 'utf8'), 'the primary version');
    assert.equal(existsSync(join(target, 'sub', 'extra.txt')), false);
    assert.equal(readFileSync(join(target, 'sub', 'deleted.txt'), 'utf8'), 'deleted on the backup by hand');

    const versions = join(backup.home, 'versions', id);
    const kept = filesUnder(versions);
    const find = (name: string) => kept.find((path) => path.endsWith(`/${name}`));
    const edited = find('edited.txt');
    const extra = find('sub/extra.txt');
    assert.ok(edited, `the hand-edited version is kept (versions: ${kept.join(', ')})`);
    assert.ok(extra, `the hand-added file is kept (versions: ${kept.join(', ')})`);
    assert.equal(readFileSync(join(versions, edited), 'utf8'), 'changed by hand on the backup');
    assert.equal(readFileSync(join(versions, extra), 'utf8'), 'added by hand on the backup');
  });

  test('kill -9 of the primary during the transfer of a large file: converges byte-identical, no temp files', async (t) => {
    const { work, source, target, defer } = workDir(t, 'kill');
    writeFileSync(join(source, 'small.txt'), 'small');
    const id = await protect(source, target);
    defer(() => unprotect(id));
    await converge(id, source, target, 'the initial sync');

    // The large file appears at once (written beside, renamed in), so its transfer starts right away.
    const staged = join(work, 'large.staged');
    writeFileSync(staged, randomBytes(64 * 1024 * 1024));
    renameSync(staged, join(source, 'large.bin'));
    // Kill once the backup is assembling it (its temp file has data), or after 2 s at the latest.
    const deadline = Date.now() + 2000;
    let midTransfer = false;
    while (!midTransfer && Date.now() < deadline) {
      midTransfer = findTemps(target).some((path) => {
        try {
          return statSync(path).size > 0;
        } catch {
          return false;
        }
      });
      if (!midTransfer) await sleep(2);
    }
    await primary.kill();
    assert.ok(midTransfer, 'the kill landed while the large file was being transferred');
    assert.notEqual(lstatSync(join(target, 'small.txt')).size, 0);

    await primary.serve([], Env);
    await Promise.all([waitPeerUp(primary), waitPeerUp(backup)]);
    await converge(id, source, target, 'the large file to arrive after the restart', 45_000);
    assert.deepEqual(findTemps(target), [], 'no temp files are left behind');
  });
});
