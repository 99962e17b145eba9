/**
 * Two-level block comparison for large files: instead of every block's hash (16 bytes per
 * 16 KiB block: 64 KiB for a 64 MiB file), the backup first sends one hash per group of
 * GroupBlocks blocks; the primary answers with its block hashes for the groups that differ,
 * and the backup asks for exactly the blocks that differ. What travels besides the blocks
 * themselves is about 1/64 of the flat list plus the differing groups' hashes.
 */
import { createHash } from 'node:crypto';
import { BlockHashBytes } from './hash-worker.js';

/** Blocks per group. @default 64 (1 MiB of file at 16 KiB blocks) */
export const GroupBlocks = 64;
/** Files with more blocks than this use groups; smaller ones send their flat list (one round trip). */
export const GroupedAboveBlocks = 256;

/** One 16-byte hash per group of block hashes (the last group may be short). */
export function groupHashes(blockHashes: Buffer, groupBlocks = GroupBlocks): Buffer {
  const blocks = blockHashes.length / BlockHashBytes;
  const groups = Math.ceil(blocks / groupBlocks);
  const out = Buffer.alloc(groups * BlockHashBytes);
  for (let g = 0; g < groups; g++) {
    const part = blockHashes.subarray(g * groupBlocks * BlockHashBytes, Math.min(blocks, (g + 1) * groupBlocks) * BlockHashBytes);
    createHash('sha256').update(part).digest().copy(out, g * BlockHashBytes, 0, BlockHashBytes);
  }
  return out;
}

/** The groups of `mine` (block hashes) whose group hash differs from `theirs` (group hashes), or that they lack. */
export function differingGroups(mine: Buffer, theirs: Buffer, groupBlocks = GroupBlocks): number[] {
  const own = groupHashes(mine, groupBlocks);
  const out: number[] = [];
  for (let g = 0; g < own.length / BlockHashBytes; g++) {
    const at = g * BlockHashBytes;
    if (at + BlockHashBytes > theirs.length || !own.subarray(at, at + BlockHashBytes).equals(theirs.subarray(at, at + BlockHashBytes))) out.push(g);
  }
  return out;
}

/**
 * The blocks to fetch, given the primary's block hashes for the groups that differ (in `groups`
 * order, concatenated; the file's last group may be short: theirBlocks says where the file ends)
 * and ours: those whose hash differs or that we lack.
 */
export function differingBlocks(groups: number[], theirHashes: Buffer, theirBlocks: number, mine: Buffer, groupBlocks = GroupBlocks): number[] {
  const out: number[] = [];
  let offset = 0;
  for (const g of groups) {
    for (let block = g * groupBlocks; block < Math.min(theirBlocks, (g + 1) * groupBlocks); block++, offset++) {
      const theirs = theirHashes.subarray(offset * BlockHashBytes, (offset + 1) * BlockHashBytes);
      const at = block * BlockHashBytes;
      if (at + BlockHashBytes > mine.length || !mine.subarray(at, at + BlockHashBytes).equals(theirs)) out.push(block);
    }
  }
  return out;
}

/** The primary's block hashes of these groups, concatenated (what differingBlocks reads). */
export function hashesOfGroups(blockHashes: Buffer, groups: number[], groupBlocks = GroupBlocks): Buffer {
  return Buffer.concat(groups.map((g) => blockHashes.subarray(g * groupBlocks * BlockHashBytes, (g + 1) * groupBlocks * BlockHashBytes)));
}
