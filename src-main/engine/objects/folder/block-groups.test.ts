import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BlockHashBytes } from './hash-worker.js';
import { differingBlocks, differingGroups, groupHashes, hashesOfGroups } from './block-groups.js';

const hashes = (blocks: number) => randomBytes(blocks * BlockHashBytes);
function withBlocksChanged(list: Buffer, blocks: number[]): Buffer {
  const copy = Buffer.from(list);
  for (const b of blocks) randomBytes(BlockHashBytes).copy(copy, b * BlockHashBytes);
  return copy;
}
/** Runs the exchange: backup's group hashes -> primary's differing groups' hashes -> blocks to fetch. */
function exchange(backup: Buffer, primary: Buffer): number[] {
  const groups = differingGroups(primary, groupHashes(backup));
  return differingBlocks(groups, hashesOfGroups(primary, groups), primary.length / BlockHashBytes, backup);
}

describe('two-level block comparison', () => {
  test('finds exactly the blocks that differ', () => {
    const backup = hashes(4096);
    const damaged = [3, 64, 65, 1000, 4095];
    assert.deepEqual(exchange(backup, withBlocksChanged(backup, damaged)), damaged);
    assert.deepEqual(exchange(backup, backup), []);
  });

  test('a file that grew: the new blocks (and a changed short last group) are fetched', () => {
    const backup = hashes(300);
    const primary = Buffer.concat([withBlocksChanged(backup, [299]), hashes(30)]);
    assert.deepEqual(exchange(backup, primary), [299, ...Array.from({ length: 30 }, (_, i) => 300 + i)]);
  });

  test('a file that shrank: nothing to fetch when what remains is the same', () => {
    const backup = hashes(500);
    const primary = backup.subarray(0, 450 * BlockHashBytes);
    // Group 7 (blocks 448-499) differs in length: its remaining blocks match.
    assert.deepEqual(exchange(backup, primary), []);
  });

  test('the group hashes are 1/64 of the flat list', () => {
    assert.equal(groupHashes(hashes(4096)).length, 64 * BlockHashBytes);
  });
});
