/**
 * Reads a SQLite write-ahead log the way SQLite itself decides what is in it: a 32-byte
 * header (magic, page size, salts, checksum) and frames of a 24-byte header plus one page.
 * A frame counts only when its salts match the header's and its checksum continues the
 * running checksum; a transaction counts only up to its commit frame (commit size > 0).
 * Reading stops at the first frame that fails, never at the end of the file: frames of an
 * older generation stay in the file after a reset.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { endianness } from 'node:os';

const WalHeaderBytes = 32;
const FrameHeaderBytes = 24;
const MagicLittleEndian = 0x377f0682;
const MagicBigEndian = 0x377f0683;
const nativeBigEndian = endianness() === 'BE';
/** How much of the WAL commitsBetween reads at a time. */
const CountBlockBytes = 1024 * 1024;

/** Where we are in a WAL: after `frame` frames of the generation with these salts, with that running checksum. */
export interface WalPosition {
  salt1: number;
  salt2: number;
  pageSize: number;
  bigEndian: boolean;
  /** Frames consumed (the last one a commit frame, or 0). */
  frame: number;
  checksum: [number, number];
}

export interface WalHeader {
  pageSize: number;
  bigEndian: boolean;
  salt1: number;
  salt2: number;
  checksum: [number, number];
}

/** One committed transaction read from the WAL: its pages (latest version of each) and the database size after it. */
export interface WalTransaction {
  pages: Map<number, Buffer>;
  /** Database size in pages after the commit. */
  dbPages: number;
}

/**
 * SQLite's WAL checksum: pairs of 32-bit words, native order chosen by the magic number.
 * `data.length` must be a multiple of 8.
 */
export function walChecksum(data: Buffer, bigEndian: boolean, start: [number, number]): [number, number] {
  // The primary checksums every frame it ships (~200 MB/s at saturation): when the WAL's order
  // is the machine's (SQLite writes it so) and the bytes are aligned, read them as words, about
  // 3x faster than readUInt32*. Int32 sums with |0 wrap exactly like SQLite's u32 arithmetic.
  if (bigEndian === nativeBigEndian && (data.byteOffset & 3) === 0 && data.length >= 64) {
    const words = new Int32Array(data.buffer, data.byteOffset, data.length >>> 2);
    let w1 = start[0] | 0;
    let w2 = start[1] | 0;
    for (let i = 0; i < words.length; i += 2) {
      w1 = (w1 + words[i]! + w2) | 0;
      w2 = (w2 + words[i + 1]! + w1) | 0;
    }
    return [w1 >>> 0, w2 >>> 0];
  }
  let s1 = start[0];
  let s2 = start[1];
  if (bigEndian) {
    for (let i = 0; i < data.length; i += 8) {
      s1 = (s1 + data.readUInt32BE(i) + s2) >>> 0;
      s2 = (s2 + data.readUInt32BE(i + 4) + s1) >>> 0;
    }
  } else {
    for (let i = 0; i < data.length; i += 8) {
      s1 = (s1 + data.readUInt32LE(i) + s2) >>> 0;
      s2 = (s2 + data.readUInt32LE(i + 4) + s1) >>> 0;
    }
  }
  return [s1, s2];
}

/** The header of a WAL, or null when the file is empty, short or not a valid WAL header. */
export function parseWalHeader(bytes: Buffer): WalHeader | null {
  if (bytes.length < WalHeaderBytes) return null;
  const magic = bytes.readUInt32BE(0);
  if (magic !== MagicLittleEndian && magic !== MagicBigEndian) return null;
  const bigEndian = magic === MagicBigEndian;
  const rawPageSize = bytes.readUInt32BE(8);
  const pageSize = rawPageSize === 1 ? 65536 : rawPageSize;
  if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return null;
  const checksum = walChecksum(bytes.subarray(0, 24), bigEndian, [0, 0]);
  if (checksum[0] !== bytes.readUInt32BE(24) || checksum[1] !== bytes.readUInt32BE(28)) return null;
  return { pageSize, bigEndian, salt1: bytes.readUInt32BE(16), salt2: bytes.readUInt32BE(20), checksum };
}

/** The position at the start of a WAL generation (no frame consumed yet). */
export function startOf(header: WalHeader): WalPosition {
  return { salt1: header.salt1, salt2: header.salt2, pageSize: header.pageSize, bigEndian: header.bigEndian, frame: 0, checksum: header.checksum };
}

export function sameGeneration(position: WalPosition, header: WalHeader | null): boolean {
  return header !== null && header.salt1 === position.salt1 && header.salt2 === position.salt2 && header.pageSize === position.pageSize;
}

/** An open WAL file, read with positioned reads (the file is written by others meanwhile). */
export class WalFile {
  private fd: number | null = null;
  private readonly index: WalIndexFile;

  constructor(readonly path: string) {
    this.index = new WalIndexFile(path.replace(/-wal$/, '-shm'));
  }

  /** The current header, or null when there is no WAL or no valid header. */
  header(): WalHeader | null {
    const fd = this.open();
    if (fd === null) return null;
    const bytes = Buffer.alloc(WalHeaderBytes);
    const read = readSync(fd, bytes, 0, WalHeaderBytes, 0);
    return parseWalHeader(bytes.subarray(0, read));
  }

  /** Size of the WAL file in bytes (0 when there is none). */
  size(): number {
    const fd = this.open();
    return fd === null ? 0 : fstatSync(fd).size;
  }

  /**
   * The committed transactions after `from`, reading at most `maxBytes` of frames. Returns
   * them with the position after the last commit frame read; frames of a transaction whose
   * commit frame is not there yet are left for the next call.
   */
  readAfter(from: WalPosition, maxBytes = 16 * 1024 * 1024, lastFrame = Infinity): { transactions: WalTransaction[]; position: WalPosition } {
    const fd = this.open();
    const transactions: WalTransaction[] = [];
    if (fd === null) return { transactions, position: from };
    const frameBytes = FrameHeaderBytes + from.pageSize;
    const inFile = fstatSync(fd).size - WalHeaderBytes - from.frame * frameBytes;
    const available = Math.min(inFile, (lastFrame - from.frame) * frameBytes);
    // A transaction larger than maxBytes is read whole in one go (it is shipped whole anyway):
    // stopping at maxBytes would find no commit frame and never move on.
    for (let limit = maxBytes; ; limit *= 2) {
      const result = this.readChunk(fd, from, Math.min(available, limit), frameBytes);
      if (result.transactions.length > 0 || limit >= available || !result.validToEnd) return result;
    }
  }

  private readChunk(fd: number, from: WalPosition, bytes: number, frameBytes: number): { transactions: WalTransaction[]; position: WalPosition; validToEnd: boolean } {
    const transactions: WalTransaction[] = [];
    const frames = Math.floor(bytes / frameBytes);
    if (frames <= 0) return { transactions, position: from, validToEnd: false };
    const chunk = Buffer.allocUnsafe(frames * frameBytes);
    const read = readSync(fd, chunk, 0, chunk.length, WalHeaderBytes + from.frame * frameBytes);
    let position = from;
    let checksum = from.checksum;
    let pending = new Map<number, Buffer>();
    const count = Math.floor(read / frameBytes);
    let valid = 0;
    for (let i = 0; i < count; i++) {
      const frame = chunk.subarray(i * frameBytes, (i + 1) * frameBytes);
      const pgno = frame.readUInt32BE(0);
      const commitSize = frame.readUInt32BE(4);
      if (pgno === 0 || frame.readUInt32BE(8) !== from.salt1 || frame.readUInt32BE(12) !== from.salt2) break;
      checksum = walChecksum(frame.subarray(0, 8), from.bigEndian, checksum);
      checksum = walChecksum(frame.subarray(FrameHeaderBytes), from.bigEndian, checksum);
      if (checksum[0] !== frame.readUInt32BE(16) || checksum[1] !== frame.readUInt32BE(20)) break;
      valid = i + 1;
      // No copy: a copy per frame (and its GC) cost the primary as much as the checksums. The
      // pages keep the chunk alive, so callers must not keep transactions long (ship encodes
      // and hashes them at once; snapshotPoint drops them).
      pending.set(pgno, frame.subarray(FrameHeaderBytes));
      if (commitSize > 0) {
        transactions.push({ pages: pending, dbPages: commitSize });
        pending = new Map();
        position = { ...from, frame: from.frame + i + 1, checksum };
      }
    }
    return { transactions, position, validToEnd: count > 0 && valid === count };
  }

  /**
   * Whether the WAL holds a frame of `position`'s generation `frames` frames past it — how a
   * backup that falls behind is noticed (the file's size says nothing: SQLite reuses the file
   * after a reset without shrinking it).
   */
  hasFrameAhead(position: WalPosition, frames: number): boolean {
    const fd = this.open();
    if (fd === null) return false;
    const header = Buffer.alloc(FrameHeaderBytes);
    const at = WalHeaderBytes + (position.frame + frames - 1) * (FrameHeaderBytes + position.pageSize);
    if (readSync(fd, header, 0, FrameHeaderBytes, at) < FrameHeaderBytes) return false;
    return header.readUInt32BE(0) !== 0 && header.readUInt32BE(8) === position.salt1 && header.readUInt32BE(12) === position.salt2;
  }

  /**
   * How many commit frames of `position`'s generation are among the frames after the first
   * `from` up to the `to`th (counts of frames, like WalPosition.frame). Reads only
   * the 24-byte frame headers and checks only their salts: a count for status, never a basis
   * for what is shipped (readAfter verifies every checksum).
   */
  commitsBetween(position: WalPosition, from: number, to: number): number {
    const fd = this.open();
    const frameBytes = FrameHeaderBytes + position.pageSize;
    // Frames are read in blocks (one read per CountBlockBytes, not one per frame: this runs at
    // every poll while the backup is behind, and a read per frame was most of its cost).
    if (fd === null || to <= from) return 0;
    const perBlock = Math.min(to - from, Math.max(1, Math.floor(CountBlockBytes / frameBytes)));
    const block = Buffer.allocUnsafe(perBlock * frameBytes);
    let commits = 0;
    for (let first = from; first < to; first += perBlock) {
      const frames = Math.min(perBlock, to - first);
      const read = Math.floor(readSync(fd, block, 0, frames * frameBytes, WalHeaderBytes + first * frameBytes) / frameBytes);
      for (let i = 0; i < read; i++) {
        const at = i * frameBytes;
        if (block.readUInt32BE(at + 8) !== position.salt1 || block.readUInt32BE(at + 12) !== position.salt2) return commits;
        if (block.readUInt32BE(at + 4) !== 0) commits += 1;
      }
      if (read < frames) break;
    }
    return commits;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    this.index.close();
  }

  /**
   * How many frames of `position`'s generation SQLite has made visible to readers (its WAL
   * index, the -shm file), or null when the index does not describe that generation.
   */
  committedFrames(position: WalPosition): number | null {
    const header = this.index.header();
    if (!header || header.salt1 !== position.salt1 || header.salt2 !== position.salt2) return null;
    return header.mxFrame;
  }

  /** Opens the WAL lazily: it does not exist while the database has no connection in WAL mode. */
  private open(): number | null {
    if (this.fd !== null) return this.fd;
    try {
      this.fd = openSync(this.path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    return this.fd;
  }
}

/** The part of SQLite's WAL index header (in the -shm file) that says which frames readers may see. */
export interface WalIndexHeader {
  mxFrame: number;
  salt1: number;
  salt2: number;
}

const IndexHeaderBytes = 48;

/**
 * Parses the two copies of the WAL index header at the start of the -shm file. A writer
 * updates the second copy, then the first; a reader that finds them different read in the
 * middle of an update and must look again (null here). Integers are in the machine's order,
 * but the salts are the WAL header's bytes copied as they are (big-endian).
 */
export function parseWalIndexHeader(bytes: Buffer): WalIndexHeader | null {
  if (bytes.length < 2 * IndexHeaderBytes) return null;
  const first = bytes.subarray(0, IndexHeaderBytes);
  if (!first.equals(bytes.subarray(IndexHeaderBytes, 2 * IndexHeaderBytes))) return null;
  const isInit = first[12];
  if (isInit !== 1) return null;
  const mxFrame = nativeBigEndian ? first.readUInt32BE(16) : first.readUInt32LE(16);
  return { mxFrame, salt1: first.readUInt32BE(32), salt2: first.readUInt32BE(36) };
}

class WalIndexFile {
  private fd: number | null = null;

  constructor(readonly path: string) {}

  header(): WalIndexHeader | null {
    if (this.fd === null) {
      try {
        this.fd = openSync(this.path, 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw error;
      }
    }
    const bytes = Buffer.alloc(2 * IndexHeaderBytes);
    for (let attempt = 0; attempt < 100; attempt++) {
      const read = readSync(this.fd, bytes, 0, bytes.length, 0);
      const header = parseWalIndexHeader(bytes.subarray(0, read));
      if (header) return header;
    }
    return null;
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
