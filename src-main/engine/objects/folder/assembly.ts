/**
 * Builds a new version of one file on the backup in a temp file beside it.
 *
 * Whole file (the backup has no version): the primary's bytes arrive in order and are written
 * in order. They are not hashed again here: every byte arrived through TLS, whose AEAD
 * already proves they are the bytes the primary hashed, and the size is checked (hashing
 * twice cost a core ~0.6 s per GiB).
 *
 * Delta (the backup has a version): the blocks the primary sends are written at their
 * offsets; at the end the worker thread copies the unchanged blocks from the backup's version
 * and hashes the result, which is accepted only when its SHA-256 equals the hash of the
 * primary's stable read — a torn mix of two versions is never installed. The main thread
 * never copies or hashes the unchanged gigabyte of a large file.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fchownSync, fsync, futimesSync, open, unlinkSync, write, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Hasher } from './hasher.js';
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

/** The backup's current version of the file, for a delta: a descriptor open since it was hashed. */
export interface LocalVersion {
  fd: number;
  hasher: Hasher;
}

/**
 * Bytes from the primary are written through libuv's pool, so that the main thread goes on
 * decrypting the next ones meanwhile (a synchronous write of 1 GiB held it ~1.4 s). Past this
 * many bytes in flight a file's writes turn synchronous: the main thread then stops reading
 * the socket, and TCP slows the primary down — memory never grows with a slow disk.
 */
const MaxBytesInFlight = 4 * 1024 * 1024;

export class Assembly {
  readonly temp: string;
  private readonly fd: number;
  /** Whole file: the next block expected. */
  private next = 0;
  /** Whole file: bytes placed so far (written or being written). */
  private written = 0;
  /** Delta: which blocks the primary sent (1 per block). */
  private received = new Uint8Array(0);
  /** No more input is taken (finished or failed). */
  private done = false;
  private settled = false;
  private writesInFlight = 0;
  private bytesInFlight = 0;
  private writeError: Error | null = null;
  private whenIdle: (() => void) | null = null;
  readonly promise: Promise<Assembled>;
  private resolve!: (value: Assembled) => void;
  private reject!: (error: Error) => void;

  /** The temp file's name for a target: beside it, so the final rename stays in one directory. */
  static tempFor(target: string): string {
    return join(dirname(target), `${TempPrefix}${basename(target).slice(0, 40)}-${randomBytes(4).toString('hex')}`);
  }

  /** Creates the temp file off the main thread (creating a file costs ~0.5 ms of journal work). */
  static async create(target: string, local: LocalVersion | null, blockSize: number, meta: { mode: number; uid: number; gid: number }): Promise<Assembly> {
    const temp = Assembly.tempFor(target);
    const fd = await new Promise<number>((resolve, reject) => open(temp, 'wx+', 0o600, (error, fd) => (error ? reject(error) : resolve(fd))));
    return new Assembly(temp, fd, local, blockSize, meta);
  }

  private constructor(
    temp: string,
    fd: number,
    private readonly local: LocalVersion | null,
    private readonly blockSize: number,
    private readonly meta: { mode: number; uid: number; gid: number },
  ) {
    this.temp = temp;
    this.fd = fd;
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // The caller awaits later; an early failure must not surface as an unhandled rejection.
    this.promise.catch(() => undefined);
  }

  /** Blocks from `index` on arrived from the primary (one or a run of consecutive ones). */
  block(index: number, data: Buffer): void {
    if (this.done) return;
    try {
      const blocks = Math.max(1, Math.ceil(data.length / this.blockSize));
      if (this.local) {
        this.markReceived(index, blocks);
        this.writeFromPrimary(data, index * this.blockSize);
        return;
      }
      if (index !== this.next) throw new AssemblyError(index < this.next ? 'blocks out of order' : 'a block was neither sent nor available locally');
      this.writeFromPrimary(data, this.written);
      this.written += data.length;
      this.next = index + blocks;
    } catch (error) {
      this.fail(error);
    }
  }

  /** The primary finished: the file is `size` bytes with SHA-256 `hash`. */
  finish(result: { ok: boolean; size: number; hash: string | null; mtimeMs: number; reason: string | null }): void {
    if (this.done) return;
    try {
      if (!result.ok || !result.hash) throw new AssemblyError(result.reason ?? 'refused');
      if (!this.local && this.written !== result.size) throw new AssemblyError(`assembled ${this.written} bytes, expected ${result.size}`);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.done = true;
    const expected = result.hash;
    this.afterWrites(() => {
      if (this.writeError) return this.fail(this.writeError);
      if (!this.local) return this.seal(expected, result);
      const local = this.local;
      this.markReceived(0, 0, Math.ceil(result.size / this.blockSize));
      // The worker writes through our descriptor: counted as a write, so nothing closes it meanwhile.
      this.writesInFlight += 1;
      local.hasher
        .fill({ temp: this.fd, local: local.fd, blockSize: this.blockSize, size: result.size, received: this.received })
        .finally(() => this.writeDone(0))
        .then((filled) => {
          if (filled.size !== result.size) throw new AssemblyError(`assembled ${filled.size} bytes, expected ${result.size}`);
          if (filled.fileHash !== expected) throw new AssemblyError('mismatch');
          this.seal(expected, result);
        })
        .catch((error: unknown) => this.fail((error as { code?: string }).code === 'ESHORT' ? new AssemblyError('the local version is shorter than its hashes said') : error));
    });
  }

  /** Gives up (link lost, error): the temp file is removed once no write of ours is still running on it. */
  fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.done = true;
    // Closing while a write is in flight could let that write land in whatever file reuses the descriptor.
    this.afterWrites(() => {
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
    });
    this.reject(error instanceof Error ? error : new AssemblyError(String(error)));
  }

  /** Mode, owner and mtime, then fsync on libuv's pool (many files reach the disk in parallel). */
  private seal(hash: string, result: { size: number; mtimeMs: number }): void {
    if (this.settled) return;
    try {
      fchmodSync(this.fd, this.meta.mode);
      if (process.getuid?.() === 0) fchownSync(this.fd, this.meta.uid, this.meta.gid);
      futimesSync(this.fd, result.mtimeMs / 1000, result.mtimeMs / 1000);
    } catch (error) {
      this.fail(error);
      return;
    }
    fsync(this.fd, (error) => {
      if (error) return this.fail(error);
      if (this.settled) return;
      closeSync(this.fd);
      this.settled = true;
      this.resolve({ temp: this.temp, hash, size: result.size, mtimeMs: result.mtimeMs });
    });
  }

  /** Marks blocks [from, from + count) received; with `size`, first makes room for that many blocks. */
  private markReceived(from: number, count: number, size = from + count): void {
    if (size > this.received.length) {
      const bigger = new Uint8Array(Math.max(size, this.received.length * 2));
      bigger.set(this.received);
      this.received = bigger;
    }
    this.received.fill(1, from, from + count);
  }

  private afterWrites(then: () => void): void {
    if (this.writesInFlight === 0) then();
    else this.whenIdle = then;
  }

  /** A received body is ours alone (the frame reader copies it), so it can be written later. */
  private writeFromPrimary(data: Buffer, position: number): void {
    if (this.writeError) throw this.writeError;
    if (this.bytesInFlight + data.length > MaxBytesInFlight) {
      for (let at = 0; at < data.length; ) at += writeSync(this.fd, data, at, data.length - at, position + at);
      return;
    }
    this.writesInFlight += 1;
    this.bytesInFlight += data.length;
    const writeRest = (offset: number): void => {
      write(this.fd, data, offset, data.length - offset, position + offset, (error, bytes) => {
        if (!error && offset + bytes < data.length) return writeRest(offset + bytes);
        if (error) {
          this.writeError ??= error;
          if (!this.done) this.fail(error);
        }
        this.writeDone(data.length);
      });
    };
    writeRest(0);
  }

  private writeDone(bytes: number): void {
    this.writesInFlight -= 1;
    this.bytesInFlight -= bytes;
    if (this.writesInFlight === 0 && this.whenIdle) {
      const then = this.whenIdle;
      this.whenIdle = null;
      then();
    }
  }
}
