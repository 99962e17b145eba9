import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { FolderEntry } from '../object-store.js';
import { BucketCount, bucketOf, digestIndex, sameEntry } from './index-digest.js';

const entry = (path: string, overrides: Partial<FolderEntry> = {}): FolderEntry => ({
  path,
  type: 'file',
  deleted: false,
  size: 100,
  mode: 0o644,
  mtimeMs: 1_700_000_000_000.25,
  uid: 0,
  gid: 0,
  ino: 1,
  linkTarget: null,
  hash: null,
  renamedFrom: null,
  seq: 1,
  changedAt: 0,
  ...overrides,
});

describe('index digest', () => {
  const index = Array.from({ length: 2000 }, (_, i) => entry(`dir-${i % 7}/file-${i}.txt`, { seq: i + 1 }));

  test('the same entries give the same root, whatever their order and whatever each node keeps of its own', () => {
    const theirs = [...index].reverse().map((e) => ({ ...e, seq: e.seq + 1000, ino: 99, changedAt: 5, hash: 'ab'.repeat(32) }));
    assert.equal(digestIndex(index).root, digestIndex(theirs).root);
    assert.equal(digestIndex(index).buckets.length, BucketCount);
  });

  test('deleted entries (tombstones on the primary) do not count', () => {
    assert.equal(digestIndex([...index, entry('gone.txt', { deleted: true })]).root, digestIndex(index).root);
  });

  test('one changed size, mode or mtime changes the root and exactly its bucket', () => {
    for (const change of [{ size: 101 }, { mode: 0o600 }, { mtimeMs: 1_700_000_001_000 }]) {
      const changed = index.map((e, i) => (i === 500 ? { ...e, ...change } : e));
      const [a, b] = [digestIndex(index), digestIndex(changed)];
      assert.notEqual(a.root, b.root, JSON.stringify(change));
      const differing = a.buckets.flatMap((h, i) => (h === b.buckets[i] ? [] : [i]));
      assert.deepEqual(differing, [bucketOf(index[500]!.path)]);
      assert.equal(sameEntry(index[500]!, changed[500]!), false);
    }
  });

  test('a missing entry changes its bucket', () => {
    const fewer = index.filter((_, i) => i !== 1234);
    const differing = digestIndex(index).buckets.flatMap((h, i) => (h === digestIndex(fewer).buckets[i] ? [] : [i]));
    assert.deepEqual(differing, [bucketOf(index[1234]!.path)]);
  });
});
