import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { browse, measure } from './path-browser.js';

function tree(): string {
  const root = mkdtempSync(join(tmpdir(), 'browse-'));
  mkdirSync(join(root, 'shared', 'deep'), { recursive: true });
  writeFileSync(join(root, 'shared', 'a.txt'), 'x'.repeat(1000));
  writeFileSync(join(root, 'shared', 'deep', 'b.bin'), Buffer.alloc(5000));
  writeFileSync(join(root, 'notes.db'), Buffer.alloc(4096)); // named like a database, but is not one
  const db = new Database(join(root, 'app.sqlite'));
  db.exec('CREATE TABLE t (x)');
  db.close();
  symlinkSync(join(root, 'shared'), join(root, 'link-to-shared'));
  return root;
}

describe('path browser', () => {
  test('lists folders first, then files with sizes; a database is told by its header, not its name; links are left out', async () => {
    const root = tree();
    const listing = await browse(root, []);
    assert.deepEqual(listing.entries.map((e) => [e.name, e.kind]), [['shared', 'folder'], ['app.sqlite', 'database'], ['notes.db', 'file']]);
    assert.equal(listing.entries.find((e) => e.name === 'notes.db')!.bytes, 4096);
    assert.equal(listing.entries[0]!.bytes, null);
    assert.equal(listing.parent, join(root, '..'));
    assert.ok(listing.places.some((p) => p.label === 'Home'));
  });

  test('marks what is protected already, and what lies inside it', async () => {
    const root = tree();
    const listing = await browse(root, [{ id: 'f-1', source: join(root, 'shared') }]);
    assert.equal(listing.entries.find((e) => e.name === 'shared')!.protectedBy, 'f-1');
    assert.equal(listing.entries.find((e) => e.name === 'app.sqlite')!.protectedBy, null);
    const inside = await browse(join(root, 'shared'), [{ id: 'f-1', source: join(root, 'shared') }]);
    assert.ok(inside.entries.every((e) => e.protectedBy === 'f-1'));
  });

  test('refuses a relative path, a missing one and a file, each in one line', async () => {
    const root = tree();
    await assert.rejects(browse('shared', []), /not an absolute path/);
    await assert.rejects(browse(join(root, 'missing'), []), /does not exist/);
    await assert.rejects(browse(join(root, 'notes.db'), []), /is not a folder/);
  });

  test('measures a folder: every file below it, once', async () => {
    const root = tree();
    assert.deepEqual(await measure(join(root, 'shared')), { path: join(root, 'shared'), bytes: 6000, files: 2, complete: true });
  });
});
