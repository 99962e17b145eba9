/**
 * Builds a new version of one file on the backup in a temp file beside it: blocks that the
 * primary sends are written, the others are copied from the backup's current version, in
 * order, hashing as it goes. The result is accepted only when its SHA-256 equals the hash of
 * the primary's stable read, so a torn mix of two versions is never installed.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, fchmodSync, fchownSync, fsync, futimesSync, open, readSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TempPrefix } from './scanner.js';

export interface Assembled {
  temp: string;
  hash: string;
  size: number;
  mtimeMs: number;
}

export class AssemblyError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'AssemblyError';
  }
}

export class Assembly {
  readonly temp: string;
  private readonly fd: number;
  private next = 0;
  private written = 0;
  private readonly hash: Hash = createHash('sha256');
  private done = false;
  private readonly scratch: Buffer;
  readonly promise: Promise<Assembled>;
  private resolve!: (value: Assembled) => void;
  private reject!: (error: Error) => void;

  /** The temp file's name for a target: beside it, so the final rename stays in one directory. */
  static tempFor(target: string): string {
    return join(dirname(target), `${TempPrefix}${basename(target).slice(0, 40)}-${randomBytes(4).toString('hex')}`);
  }

  /** Creates the temp file off the main thread (creating a file costs ~0.5 ms of journal work). */
  static async create(target: string, localFd: number | null, blockSize: number, meta: { mode: number; uid: number; gid: number }): Promise<Assembly> {
    const temp = Assembly.tempFor(target);
    const fd = await new Promise<number>((resolve, reject) => open(temp, 'wx', 0o600, (error, fd) => (error ? reject(error) : resolve(fd))));
    return new Assembly(temp, fd, localFd, blockSize, meta);
  }

  /**
   * @param localFd an open descriptor of the current version, or null when there is none
   */
  private constructor(
    temp: string,
    fd: number,
    private readonly localFd: number | null,
    private readonly blockSize: number,
    private readonly meta: { mode: number; uid: number; gid: number },
  ) {
    this.temp = temp;
    this.fd = fd;
    this.scratch = Buffer.allocUnsafe(blockSize);
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // The caller awaits later; an early failure must not surface as an unhandled rejection.
    this.promise.catch(() => undefined);
  }

  /** Blocks from `index` on arrived from the primary (one or a run of consecutive ones, in ascending order). */
  block(index: number, data: Buffer): void {
    if (this.done) return;
    try {
      if (index < this.next) throw new AssemblyError('blocks out of order');
      this.copyLocal(index);
      this.write(data);
      this.next = index + Math.max(1, Math.ceil(data.length / this.blockSize));
    } catch (error) {
      this.fail(error);
    }
  }

  /** The primary finished: the file is `size` bytes with SHA-256 `hash`. */
  finish(result: { ok: boolean; size: number; hash: string | null; mtimeMs: number; reason: string | null }): void {
    if (this.done) return;
    let hash: string;
    try {
      if (!result.ok || !result.hash) throw new AssemblyError(result.reason ?? 'refused');
      this.copyLocal(Math.ceil(result.size / this.blockSize));
      if (this.written !== result.size) throw new AssemblyError(`assembled ${this.written} bytes, expected ${result.size}`);
      hash = this.hash.digest('hex');
      if (hash !== result.hash) throw new AssemblyError('mismatch');
      fchmodSync(this.fd, this.meta.mode);
      if (process.getuid?.() === 0) fchownSync(this.fd, this.meta.uid, this.meta.gid);
      futimesSync(this.fd, result.mtimeMs / 1000, result.mtimeMs / 1000);
    } catch (error) {
      this.fail(error);
      return;
    }
    // fsync runs on libuv's thread pool: many files reach the disk in parallel, and the main
    // thread goes on with other messages meanwhile (a serialized fsync costs ~1 ms a file).
    this.done = true;
    fsync(this.fd, (error) => {
      if (error) {
        this.done = false;
        this.fail(error);
        return;
      }
      closeSync(this.fd);
      this.resolve({ temp: this.temp, hash, size: result.size, mtimeMs: result.mtimeMs });
    });
  }

  /** Gives up (link lost, error): the temp file is removed. */
  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    try {
      unlinkSync(this.temp);
    } catch {
      // never created or already gone
    }
    this.reject(error instanceof Error ? error : new AssemblyError(String(error)));
  }

  /** Copies the backup's own blocks [next, upTo) into place: the primary said they match. */
  private copyLocal(upTo: number): void {
    for (; this.next < upTo; this.next++) {
      if (this.localFd === null) throw new AssemblyError('a block was neither sent nor available locally');
      const read = readSync(this.localFd, this.scratch, 0, this.blockSize, this.next * this.blockSize);
      if (read === 0) throw new AssemblyError('the local version is shorter than its hashes said');
      this.write(this.scratch.subarray(0, read));
    }
  }

  private write(data: Buffer): void {
    let at = 0;
    while (at < data.length) at += writeSync(this.fd, data, at, data.length - at, this.written + at);
    this.hash.update(data);
    this.written += data.length;
  }
}
