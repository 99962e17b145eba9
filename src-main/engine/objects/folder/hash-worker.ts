/**
 * File work off the main thread, reading in large chunks so a 1 GiB file is never held in
 * memory: block hashes (first 16 bytes of SHA-256 per block) and the SHA-256 of the whole
 * file in one pass; and the last step of a delta — copying the unchanged blocks of the
 * backup's version into the new one, then hashing the result.
 */
import { parentPort } from 'node:worker_threads';
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';

export interface HashJob {
  id: number;
  kind?: 'hash';
  path: string;
  blockSize: number;
}

/**
 * Fill the blocks of `temp` not marked in `received` from `local`, then hash temp's `size`
 * bytes. Both are descriptors the main thread opened (descriptors belong to the process, so
 * the worker can use them) and keeps open until the reply: the backup's version is read as
 * it was when it was hashed, even if it is renamed or replaced meanwhile.
 */
export interface FillJob {
  id: number;
  kind: 'fill';
  temp: number;
  local: number;
  blockSize: number;
  size: number;
  received: Uint8Array;
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

function fill(job: FillJob): HashReply {
  const { temp, local } = job;
  {
    const blocks = Math.ceil(job.size / job.blockSize);
    const chunk = Buffer.allocUnsafe(Math.max(ChunkBytes - (ChunkBytes % job.blockSize), job.blockSize));
    const perChunk = chunk.length / job.blockSize;
    for (let block = 0; block < blocks; ) {
      if (job.received[block]) {
        block += 1;
        continue;
      }
      // A run of blocks the primary said are unchanged: one read and one write.
      let run = 1;
      while (run < perChunk && block + run < blocks && !job.received[block + run]) run += 1;
      const at = block * job.blockSize;
      const want = Math.min(run * job.blockSize, job.size - at);
      const read = readSync(local, chunk, 0, want, at);
      if (read < want) return { id: job.id, ok: false, code: 'ESHORT', message: 'the local version is shorter than its hashes said' };
      for (let done = 0; done < read; ) done += writeSync(temp, chunk, done, read - done, at + done);
      block += run;
    }
    const whole = createHash('sha256');
    for (let offset = 0; offset < job.size; ) {
      const read = readSync(temp, chunk, 0, Math.min(chunk.length, job.size - offset), offset);
      if (read === 0) break;
      whole.update(chunk.subarray(0, read));
      offset += read;
    }
    return { id: job.id, ok: true, size: fstatSync(temp).size, mtimeMs: 0, ino: 0, fileHash: whole.digest('hex'), blocks: new Uint8Array(0) };
  }
}

parentPort?.on('message', (job: HashJob | FillJob) => {
  let reply: HashReply;
  try {
    reply = job.kind === 'fill' ? fill(job) : hashFile(job);
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    reply = { id: job.id, ok: false, code: e.code ?? 'EIO', message: e.message };
  }
  parentPort!.postMessage(reply);
});
