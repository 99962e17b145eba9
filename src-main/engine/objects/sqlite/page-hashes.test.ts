import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PageHashes } from './page-hashes.js';

const page = (fill: number) => Buffer.alloc(4096, fill);

describe('PageHashes', () => {
  it('gives equal checksums for equal pages, whatever order they were recorded in', () => {
    const pages = Array.from({ length: 50 }, () => randomBytes(4096));
    const forward = new PageHashes();
    pages.forEach((data, i) => forward.set(i + 1, data));
    const backward = new PageHashes();
    for (let i = pages.length - 1; i >= 0; i--) backward.set(i + 1, pages[i]!);
    assert.equal(forward.checksum(), backward.checksum());
    assert.equal(forward.pages, 50);
  });

  it('changes the checksum when one page changes, and restores it when the page goes back', () => {
    const hashes = new PageHashes();
    for (let n = 1; n <= 10; n++) hashes.set(n, page(n));
    const before = hashes.checksum();
    assert.equal(hashes.set(4, page(99)), true);
    assert.notEqual(hashes.checksum(), before);
    assert.equal(hashes.set(4, page(4)), true);
    assert.equal(hashes.checksum(), before);
    assert.equal(hashes.set(4, page(4)), false, 'the same content is no change');
  });

  it('tells the same content at another page number apart', () => {
    const a = new PageHashes();
    a.set(1, page(1));
    a.set(2, page(2));
    const b = new PageHashes();
    b.set(1, page(2));
    b.set(2, page(1));
    assert.notEqual(a.checksum(), b.checksum());
  });

  it('drops truncated pages from the checksum', () => {
    const short = new PageHashes();
    const long = new PageHashes();
    for (let n = 1; n <= 5; n++) short.set(n, page(n));
    for (let n = 1; n <= 8; n++) long.set(n, page(n));
    long.truncate(5);
    assert.equal(long.pages, 5);
    assert.equal(long.checksum(), short.checksum());
    assert.equal(long.get(6), null);
  });

  it("ignores page 1's journal-mode bytes, change counter and version fields (SQLite writes its own on each side)", () => {
    const wal = page(7);
    wal[18] = 2;
    wal[19] = 2;
    wal.writeUInt32BE(31, 24);
    wal.writeUInt32BE(31, 92);
    wal.writeUInt32BE(3053002, 96);
    const rollback = page(7);
    rollback[18] = 1;
    rollback[19] = 1;
    rollback.writeUInt32BE(2, 24);
    rollback.writeUInt32BE(2, 92);
    rollback.writeUInt32BE(3040001, 96);
    const a = new PageHashes();
    a.set(1, wal);
    const b = new PageHashes();
    b.set(1, rollback);
    assert.equal(a.checksum(), b.checksum());
    const schemaChange = page(7);
    schemaChange[40] = 9; // the schema cookie is content
    const c = new PageHashes();
    c.set(1, schemaChange);
    assert.notEqual(c.checksum(), a.checksum());
  });

  it('survives the wire: fromBuffer(toBuffer()) has the same hashes and checksum', () => {
    const hashes = new PageHashes();
    for (let n = 1; n <= 300; n++) hashes.set(n, randomBytes(1024));
    const copy = PageHashes.fromBuffer(hashes.toBuffer());
    assert.equal(copy.pages, 300);
    assert.equal(copy.checksum(), hashes.checksum());
    assert.deepEqual(copy.get(123), hashes.get(123));
  });
});
