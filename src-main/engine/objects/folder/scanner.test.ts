import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FolderEntry } from '../object-store.js';
import { excludeFilter, scanFolder, TempPrefix, type Change } from './scanner.js';

function tempRoot(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-scanner-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The index a primary would hold after recording these changes (each gets the next seq). */
function recorded(changes: Change[], index = new Map<string, FolderEntry>()): Map<string, FolderEntry> {
  let seq = Math.max(0, ...[...index.values()].map((e) => e.seq));
  for (const change of changes) {
    seq += 1;
    index.set(change.path, { ...change, seq });
  }
  return index;
}

const none = excludeFilter([]);

/** a/, a/b/, a/b/deep.txt, a/mid.txt, top.txt, z/ (empty), link -> top.txt */
function populate(root: string): void {
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  mkdirSync(join(root, 'z'));
  writeFileSync(join(root, 'a', 'b', 'deep.txt'), 'deep');
  writeFileSync(join(root, 'a', 'mid.txt'), 'middle');
  writeFileSync(join(root, 'top.txt'), 'top of the tree');
  symlinkSync('top.txt', join(root, 'link'));
}

describe('scanFolder', () => {
  test('against an empty index: everything, directories first, parents before children, nothing deleted', async (t) => {
    const root = tempRoot(t);
    populate(root);
    const { changes, skipped, seen } = await scanFolder(root, new Map(), none, null);
    assert.deepEqual(skipped, []);
    assert.equal(seen, 7);
    assert.deepEqual(changes.map((c) => c.path).sort(), ['a', 'a/b', 'a/b/deep.txt', 'a/mid.txt', 'link', 'top.txt', 'z']);
    assert.ok(changes.every((c) => !c.deleted && c.renamedFrom === null));
    const firstNonDir = changes.findIndex((c) => c.type !== 'dir');
    assert.ok(firstNonDir > 0, 'there are directories first');
    assert.ok(changes.slice(0, firstNonDir).every((c) => c.type === 'dir'), 'directories come first');
    assert.ok(changes.slice(firstNonDir).every((c) => c.type !== 'dir'), 'then files and links');
    const order = changes.map((c) => c.path);
    assert.ok(order.indexOf('a') < order.indexOf('a/b'), 'parents before children');
    const top = changes.find((c) => c.path === 'top.txt')!;
    assert.equal(top.type, 'file');
    assert.equal(top.size, 'top of the tree'.length);
    const link = changes.find((c) => c.path === 'link')!;
    assert.equal(link.type, 'symlink');
    assert.equal(link.linkTarget, 'top.txt');
  });

  test('a second scan against the recorded index lists nothing', async (t) => {
    const root = tempRoot(t);
    populate(root);
    const first = await scanFolder(root, new Map(), none, null);
    const index = recorded(first.changes);
    const second = await scanFolder(root, index, none, null);
    assert.deepEqual(second.changes, []);
    const scoped = await scanFolder(root, index, none, ['a', 'a/b/deep.txt']);
    assert.deepEqual(scoped.changes, [], 'a scoped scan of unchanged paths lists nothing either');
  });

  test('a rename is reported at the new path with renamedFrom, and the old path as a deletion after it', async (t) => {
    const root = tempRoot(t);
    populate(root);
    const index = recorded((await scanFolder(root, new Map(), none, null)).changes);
    renameSync(join(root, 'top.txt'), join(root, 'a', 'b', 'moved.txt'));
    const { changes } = await scanFolder(root, index, none, null);
    const paths = changes.map((c) => `${c.deleted ? '-' : '+'}${c.path}`);
    const added = changes.find((c) => c.path === 'a/b/moved.txt');
    assert.ok(added, `the new path is listed: ${paths.join(' ')}`);
    assert.equal(added.deleted, false);
    assert.equal(added.renamedFrom, 'top.txt');
    assert.equal(added.hash, index.get('top.txt')!.hash, 'the known hash moves with it');
    const removed = changes.find((c) => c.path === 'top.txt');
    assert.ok(removed, `the old path is listed: ${paths.join(' ')}`);
    assert.equal(removed.deleted, true);
    assert.ok(changes.indexOf(removed) > changes.indexOf(added), `the deletion comes after the new path: ${paths.join(' ')}`);
  });

  test('deletions come last, children before their parents', async (t) => {
    const root = tempRoot(t);
    populate(root);
    const index = recorded((await scanFolder(root, new Map(), none, null)).changes);
    rmSync(join(root, 'a'), { recursive: true });
    writeFileSync(join(root, 'new.txt'), 'new');
    const { changes } = await scanFolder(root, index, none, null);
    assert.deepEqual(
      changes.map((c) => `${c.deleted ? '-' : '+'}${c.path}`),
      ['+new.txt', '-a/mid.txt', '-a/b/deep.txt', '-a/b', '-a'],
    );
  });

  test('a missing root throws and never reports deletions', async (t) => {
    const root = tempRoot(t);
    const folder = join(root, 'folder');
    mkdirSync(folder);
    populate(folder);
    const index = recorded((await scanFolder(folder, new Map(), none, null)).changes);
    renameSync(folder, join(root, 'away'));
    await assert.rejects(scanFolder(folder, index, none, null), { code: 'ENOENT' });
    await assert.rejects(scanFolder(folder, index, none, ['a']), { code: 'ENOENT' }, 'a scoped scan too');
    await assert.rejects(scanFolder(folder, index, none, ['']), { code: 'ENOENT' });
    // A file where the folder was is not the folder either.
    writeFileSync(folder, 'not a folder');
    await assert.rejects(scanFolder(folder, index, none, null), { code: 'ENOTDIR' });
  });

  test('excluded paths (globs, our temp files) are left out', async (t) => {
    const root = tempRoot(t);
    mkdirSync(join(root, 'cache', 'inner'), { recursive: true });
    mkdirSync(join(root, 'docs'));
    writeFileSync(join(root, 'cache', 'inner', 'blob.bin'), 'x');
    writeFileSync(join(root, 'cache', 'top.bin'), 'x');
    writeFileSync(join(root, 'scratch.tmp'), 'x');
    writeFileSync(join(root, 'docs', 'draft.tmp'), 'x');
    writeFileSync(join(root, 'docs', 'report.txt'), 'kept');
    writeFileSync(join(root, 'docs', 'notes.tmp.txt'), 'kept');
    writeFileSync(join(root, 'docs', `${TempPrefix}report.txt-1234`), 'ours');
    const filter = excludeFilter(['*.tmp', 'cache/**']);
    const { changes, skipped } = await scanFolder(root, new Map(), filter, null);
    const paths = changes.map((c) => c.path);
    assert.deepEqual(skipped, [], 'exclusions are by choice, not reported as skipped');
    assert.ok(paths.includes('docs/report.txt') && paths.includes('docs/notes.tmp.txt'), paths.join(' '));
    for (const path of paths) {
      assert.ok(!path.endsWith('.tmp'), `${path} matches *.tmp`);
      assert.ok(!path.startsWith('cache/'), `${path} is under cache/`);
      assert.ok(!path.includes(TempPrefix), `${path} is one of our temp files`);
    }
    // Without excludes, the same tree lists them.
    const all = (await scanFolder(root, new Map(), excludeFilter([]), null)).changes.map((c) => c.path);
    assert.ok(all.includes('cache/inner/blob.bin') && all.includes('docs/draft.tmp'));
    assert.ok(!all.some((path) => path.includes(TempPrefix)), 'our temp files are always left out');
  });

  test("a database beside a '-wal' is skipped as 'excluded-sqlite', its companions silently", async (t) => {
    const root = tempRoot(t);
    writeFileSync(join(root, 'shop.db'), 'SQLite format 3\0');
    writeFileSync(join(root, 'shop.db-wal'), 'wal');
    writeFileSync(join(root, 'shop.db-shm'), 'shm');
    writeFileSync(join(root, 'old.db'), 'SQLite format 3\0'); // no companions: a plain file
    writeFileSync(join(root, 'plain.txt'), 'plain');
    const { changes, skipped } = await scanFolder(root, new Map(), none, null);
    assert.deepEqual(changes.map((c) => c.path).sort(), ['old.db', 'plain.txt']);
    assert.equal(skipped.length, 1, JSON.stringify(skipped));
    assert.equal(skipped[0]!.path, 'shop.db');
    assert.equal(skipped[0]!.reason, 'excluded-sqlite');
    assert.match(skipped[0]!.detail, /wal/);
  });

  test("a database beside a '-journal' is skipped too", async (t) => {
    const root = tempRoot(t);
    mkdirSync(join(root, 'data'));
    writeFileSync(join(root, 'data', 'app.sqlite'), 'SQLite format 3\0');
    writeFileSync(join(root, 'data', 'app.sqlite-journal'), 'journal');
    const { changes, skipped } = await scanFolder(root, new Map(), none, null);
    assert.deepEqual(changes.map((c) => c.path), ['data']);
    assert.deepEqual(skipped.map((s) => [s.path, s.reason]), [['data/app.sqlite', 'excluded-sqlite']]);
  });

  test('a name that is not valid UTF-8 is skipped as not-utf8; its neighbours are listed', async (t) => {
    const root = tempRoot(t);
    writeFileSync(Buffer.concat([Buffer.from(`${root}/`), Buffer.from([0x66, 0xff, 0x2e, 0x74])]), 'bad name');
    writeFileSync(join(root, 'good.txt'), 'good');
    writeFileSync(join(root, 'café.txt'), 'valid UTF-8');
    const { changes, skipped } = await scanFolder(root, new Map(), none, null);
    assert.deepEqual(changes.map((c) => c.path).sort(), ['café.txt', 'good.txt']);
    assert.equal(skipped.length, 1);
    assert.equal(skipped[0]!.reason, 'not-utf8');
  });
});
