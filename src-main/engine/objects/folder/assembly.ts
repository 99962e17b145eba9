/**
 * Builds a new version of one file on the backup in a temp file beside it: blocks that the
 * primary sends are written, the others are copied from the backup's current version, in
 * order, hashing as it goes. The result is accepted only when its SHA-256 equals the hash of
 * the primary's stable read, so a torn mix of two versions is never installed. A file built
 * from the primary's bytes alone (no local version) is not hashed again here: every byte
 * arrived in order through TLS, whose AEAD already proves they are the bytes the primary
 * hashed, and its size is checked; hashing it twice cost a core ~0.6 s per GiB.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, fchmodSync, fchownSync, fsync, futimesSync, open, readSync, unlinkSync, write, writeSync } from 'node:fs';
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

/**
 * Bytes from the primary written through libuv's pool, so that the main thread goes on
 * decrypting the next ones meanwhile (a synchronous write of 1 GiB held it ~1.4 s). Past this
 * many bytes in flight a file's writes turn synchronous: the main thread then stops reading
 * the socket, and TCP slows the primary down — memory never grows with a slow disk.
 */
const MaxBytesInFlight = 4 * 1024 * 1024;

export class Assembly {
  readonly temp: string;
  private readonly fd: number;
  private next = 0;
  /** Bytes placed so far (written or being written). */
  private written = 0;
  /** Null when every byte comes from the primary (see above). */
  private readonly hash: Hash | null;
  /** No more input is taken (finished or failed). */
  private done = false;
  private settled = false;
  private writesInFlight = 0;
  private bytesInFlight = 0;
  private writeError: Error | null = null;
  private whenIdle: (() => void) | null = null;
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
    this.hash = localFd === null ? null : createHash('sha256');
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
      this.writeFromPrimary(data);
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
      hash = this.hash ? this.hash.digest('hex') : result.hash;
      if (hash !== result.hash) throw new AssemblyError('mismatch');
    } catch (error) {
      this.fail(error);
      return;
    }
    this.done = true;
    this.afterWrites(() => {
      try {
        if (this.writeError) throw this.writeError;
        fchmodSync(this.fd, this.meta.mode);
        if (process.getuid?.() === 0) fchownSync(this.fd, this.meta.uid, this.meta.gid);
        futimesSync(this.fd, result.mtimeMs / 1000, result.mtimeMs / 1000);
      } catch (error) {
        this.fail(error);
        return;
      }
      // fsync runs on libuv's thread pool: many files reach the disk in parallel, and the main
      // thread goes on with other messages meanwhile (a serialized fsync costs ~1 ms a file).
      fsync(this.fd, (error) => {
        if (error) return this.fail(error);
        closeSync(this.fd);
        this.settled = true;
        this.resolve({ temp: this.temp, hash, size: result.size, mtimeMs: result.mtimeMs });
      });
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

  private afterWrites(then: () => void): void {
    if (this.writesInFlight === 0) then();
    else this.whenIdle = then;
  }

  /** Copies the backup's own blocks [next, upTo) into place: the primary said they match. */
  private copyLocal(upTo: number): void {
    for (; this.next < upTo; this.next++) {
      if (this.localFd === null) throw new AssemblyError('a block was neither sent nor available locally');
      const read = readSync(this.localFd, this.scratch, 0, this.blockSize, this.next * this.blockSize);
      if (read === 0) throw new AssemblyError('the local version is shorter than its hashes said');
      // The scratch buffer is reused for the next block: this write must be done before we return.
      this.writeNow(this.scratch.subarray(0, read));
    }
  }

  /** A received body is ours alone (the frame reader copies it), so it can be written later. */
  private writeFromPrimary(data: Buffer): void {
    if (this.writeError) throw this.writeError;
    if (this.bytesInFlight + data.length > MaxBytesInFlight) return this.writeNow(data);
    this.hash?.update(data);
    const at = this.written;
    this.written += data.length;
    this.writesInFlight += 1;
    this.bytesInFlight += data.length;
    const writeRest = (offset: number): void => {
      write(this.fd, data, offset, data.length - offset, at + offset, (error, bytes) => {
        if (!error && offset + bytes < data.length) return writeRest(offset + bytes);
        if (error) {
          this.writeError ??= error;
          if (!this.done) this.fail(error);
        }
        this.writesInFlight -= 1;
        this.bytesInFlight -= data.length;
        if (this.writesInFlight === 0 && this.whenIdle) {
          const then = this.whenIdle;
          this.whenIdle = null;
          then();
        }
      });
    };
    writeRest(0);
  }

  private writeNow(data: Buffer): void {
    let at = 0;
    while (at < data.length) at += writeSync(this.fd, data, at, data.length - at, this.written + at);
    this.hash?.update(data);
    this.written += data.length;
  }
}
