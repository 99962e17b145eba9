/**
 * A 16-byte hash of every page of a database, and the state checksum built from them: the
 * XOR of all page hashes, so that a transaction updates it in O(pages it changed) — XOR out
 * a page's old hash, XOR in the new one (the LiteFS idea, with SHA-256 instead of CRC64).
 * Page 1's header fields that SQLite keeps for each file itself are left out of its hash:
 * the journal-mode bytes (18, 19; the copy stays in WAL mode whatever the primary uses), the
 * file change counter (24..27) and its version-valid-for copy and the SQLite version number
 * (92..99) — SQLite on the backup writes its own values there when it commits, whatever
 * sqlite_dbpage was given — so they must not count as differences.
 */
import { createHash } from 'node:crypto';

export const PageHashBytes = 16;

export function hashPage(pgno: number, data: Buffer): Buffer {
  const hash = createHash('sha256');
  const number = Buffer.allocUnsafe(4);
  number.writeUInt32BE(pgno);
  hash.update(number);
  if (pgno === 1 && data.length >= 100) {
    const header = Buffer.from(data.subarray(0, 100));
    header.fill(0, 18, 20);
    header.fill(0, 24, 28);
    header.fill(0, 92, 100);
    hash.update(header);
    hash.update(data.subarray(100));
  } else {
    hash.update(data);
  }
  return hash.digest().subarray(0, PageHashBytes);
}

export class PageHashes {
  /** Hashes of pages 1..count, page n at (n - 1) * 16. */
  private hashes: Buffer;
  private count = 0;
  private readonly sum = Buffer.alloc(PageHashBytes);

  constructor(initialCapacity = 256) {
    this.hashes = Buffer.alloc(initialCapacity * PageHashBytes);
  }

  /** From the wire: `count` hashes back to back. */
  static fromBuffer(bytes: Buffer): PageHashes {
    const pages = Math.floor(bytes.length / PageHashBytes);
    const result = new PageHashes(Math.max(1, pages));
    for (let pgno = 1; pgno <= pages; pgno++) result.setHash(pgno, bytes.subarray((pgno - 1) * PageHashBytes, pgno * PageHashBytes));
    return result;
  }

  get pages(): number {
    return this.count;
  }

  /** The state checksum (hex): equal on two sides exactly when every page hash is. */
  checksum(): string {
    return this.sum.toString('hex');
  }

  /** The hash of page pgno, or null past the end. */
  get(pgno: number): Buffer | null {
    if (pgno < 1 || pgno > this.count) return null;
    return this.hashes.subarray((pgno - 1) * PageHashBytes, pgno * PageHashBytes);
  }

  /** Records page pgno's new content; returns whether it differs from what was recorded. */
  set(pgno: number, data: Buffer): boolean {
    return this.setHash(pgno, hashPage(pgno, data));
  }

  setHash(pgno: number, hash: Buffer): boolean {
    while (pgno > this.count) this.grow();
    const at = (pgno - 1) * PageHashBytes;
    const old = this.hashes.subarray(at, at + PageHashBytes);
    if (old.equals(hash)) return false;
    this.xor(old);
    this.xor(hash);
    hash.copy(this.hashes, at);
    return true;
  }

  /** The database now has `pages` pages: hashes past it are dropped from the checksum. */
  truncate(pages: number): void {
    while (this.count > pages) {
      this.xor(this.get(this.count)!);
      this.hashes.fill(0, (this.count - 1) * PageHashBytes, this.count * PageHashBytes);
      this.count -= 1;
    }
  }

  /** All hashes back to back (a copy), for the wire. */
  toBuffer(): Buffer {
    return Buffer.from(this.hashes.subarray(0, this.count * PageHashBytes));
  }

  /** A page that is not there yet counts as all zero bytes of hash (an empty slot XORs nothing). */
  private grow(): void {
    if ((this.count + 1) * PageHashBytes > this.hashes.length) {
      const bigger = Buffer.alloc(Math.max(this.hashes.length * 2, (this.count + 1) * PageHashBytes));
      this.hashes.copy(bigger);
      this.hashes = bigger;
    }
    this.count += 1;
  }

  private xor(hash: Buffer): void {
    for (let i = 0; i < PageHashBytes; i++) this.sum[i]! ^= hash[i]!;
  }
}
