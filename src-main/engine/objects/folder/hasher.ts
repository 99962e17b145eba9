/** The main thread's handle on the hashing worker: one job at a time per worker, queued. */
import { Worker } from 'node:worker_threads';
import type { FillJob, HashJob, HashReply } from './hash-worker.js';

export interface FileHashes {
  size: number;
  mtimeMs: number;
  ino: number;
  fileHash: string;
  /** Concatenated 16-byte block hashes. */
  blocks: Buffer;
}

export class Hasher {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (h: FileHashes) => void; reject: (e: Error) => void }>();

  constructor() {
    this.worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    this.worker.on('message', (reply: HashReply) => {
      const waiter = this.waiting.get(reply.id);
      if (!waiter) return;
      this.waiting.delete(reply.id);
      if (reply.ok) waiter.resolve({ size: reply.size, mtimeMs: reply.mtimeMs, ino: reply.ino, fileHash: reply.fileHash, blocks: Buffer.from(reply.blocks.buffer, reply.blocks.byteOffset, reply.blocks.byteLength) });
      else waiter.reject(Object.assign(new Error(reply.message), { code: reply.code }));
    });
    this.worker.on('error', (error) => {
      for (const w of this.waiting.values()) w.reject(error);
      this.waiting.clear();
    });
    this.worker.unref();
  }

  /** Block and whole-file hashes of the file at path (read by the worker, never by the main thread). */
  hash(path: string, blockSize: number): Promise<FileHashes> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, path, blockSize } satisfies HashJob);
    });
  }

  /**
   * Completes a delta in the worker: copies the blocks of `local` not marked in `received`
   * into `temp`, then hashes temp's first `size` bytes. Resolves with temp's size and hash.
   */
  fill(job: Omit<FillJob, 'id' | 'kind'>): Promise<FileHashes> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ ...job, id, kind: 'fill' } satisfies FillJob);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}
