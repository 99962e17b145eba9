/**
 * Hashing off the main thread: block hashes (first 16 bytes of SHA-256 per block) and the
 * SHA-256 of the whole file, in one pass, reading in large chunks so a 1 GiB file is never
 * held in memory.
 */
import { parentPort } from 'node:worker_threads';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createHash } from 'node:crypto';

export interface HashJob {
  id: number;
  path: string;
  blockSize: number;
}

export type HashReply =
  | { id: number; ok: true; size: number; mtimeMs: number; ino: number; fileHash: string; blocks: Uint8Array }
  | { id: number; ok: false; code: string; message: string };

export const BlockHashBytes = 16;
const ChunkBytes = 1024 * 1024;

function hashFile(job: HashJob): HashReply {
  const fd = openSync(job.path, 'r');
  try {
    const stat = fstatSync(fd);
    const whole = createHash('sha256');
    const blockCount = Math.ceil(stat.size / job.blockSize);
    const blocks = new Uint8Array(blockCount * BlockHashBytes);
    const chunk = Buffer.allocUnsafe(Math.max(ChunkBytes - (ChunkBytes % job.blockSize), job.blockSize));
    let offset = 0;
    let block = 0;
    for (;;) {
      const read = readSync(fd, chunk, 0, chunk.length, offset);
      if (read === 0) break;
      const data = chunk.subarray(0, read);
      whole.update(data);
      for (let at = 0; at < read; at += job.blockSize) {
        const digest = createHash('sha256').update(data.subarray(at, Math.min(read, at + job.blockSize))).digest();
        blocks.set(digest.subarray(0, BlockHashBytes), block * BlockHashBytes);
        block += 1;
      }
      offset += read;
      // A short read means the file was truncated under us; the size check below tells.
      if (read < chunk.length) break;
    }
    return { id: job.id, ok: true, size: offset, mtimeMs: stat.mtimeMs, ino: stat.ino, fileHash: whole.digest('hex'), blocks: blocks.subarray(0, block * BlockHashBytes) };
  } finally {
    closeSync(fd);
  }
}

parentPort?.on('message', (job: HashJob) => {
  let reply: HashReply;
  try {
    reply = hashFile(job);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    reply = { id: job.id, ok: false, code: e.code ?? 'EIO', message: e.message };
  }
  parentPort!.postMessage(reply);
});
