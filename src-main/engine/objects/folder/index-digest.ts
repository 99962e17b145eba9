/**
 * A two-level Merkle tree over a folder's index: each live entry (path, type, size, mode,
 * mtime, link target) falls into one of 256 buckets by the hash of its path;
 * a bucket's hash covers its entries in path order, the root covers the 256 bucket hashes.
 * Primary and backup compare roots (one hash); only when they differ do they compare
 * buckets (256 hashes), and only the differing buckets' entries travel.
 */
import { createHash } from 'node:crypto';
import type { FolderEntry } from '../object-store.js';

export const BucketCount = 256;

export interface IndexDigest {
  root: string;
  /** BucketCount hashes, hex. */
  buckets: string[];
}

export function bucketOf(path: string): number {
  return createHash('sha256').update(path).digest()[0]!;
}

/**
 * What of an entry the copy must match: not its seq, inode or when it changed (each node's
 * own), and not its content hash, which only the backup's index keeps (the primary hashes a
 * file when it sends it; the backup checks what arrives against that hash, and its scrub
 * re-checks the files on disk against what it recorded).
 */
function entryLine(entry: FolderEntry): string {
  return [entry.path, entry.type, entry.size, entry.mode.toString(8), Math.round(entry.mtimeMs), entry.linkTarget ?? ''].join('\0');
}

/** Whether two entries agree on everything the digest covers. */
export function sameEntry(a: FolderEntry, b: FolderEntry): boolean {
  return entryLine(a) === entryLine(b);
}

export function liveEntries(index: Iterable<FolderEntry>): FolderEntry[] {
  return [...index].filter((entry) => !entry.deleted);
}

export function digestIndex(index: Iterable<FolderEntry>): IndexDigest {
  const byBucket: FolderEntry[][] = Array.from({ length: BucketCount }, () => []);
  for (const entry of liveEntries(index)) byBucket[bucketOf(entry.path)]!.push(entry);
  const buckets = byBucket.map((entries) => {
    const hash = createHash('sha256');
    for (const entry of entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) hash.update(entryLine(entry)).update('\n');
    return hash.digest('hex').slice(0, 32);
  });
  const root = createHash('sha256').update(buckets.join('')).digest('hex').slice(0, 32);
  return { root, buckets };
}
