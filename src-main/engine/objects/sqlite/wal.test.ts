import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { sameGeneration, startOf, walChecksum, WalFile } from './wal.js';

function walDatabase() {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-wal-'));
  const path = join(dir, 'app.db');
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
  return { dir, path, db, cleanup: () => (db.close(), rmSync(dir, { recursive: true, force: true })) };
}

describe('WalFile', () => {
  it('reads every committed transaction with its pages and the database size after it', () => {
    const { path, db, cleanup } = walDatabase();
    try {
      const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
      for (let i = 0; i < 20; i++) insert.run('x'.repeat(500));
      const wal = new WalFile(`${path}-wal`);
      const header = wal.header();
      assert.ok(header, 'a WAL header');
      const { transactions, position } = wal.readAfter(startOf(header));
      // CREATE TABLE (the journal_mode change writes nothing to the WAL) and 20 inserts.
      assert.equal(transactions.length, 21);
      assert.equal(transactions.at(-1)!.dbPages, Number(db.pragma('page_count', { simple: true })));
      assert.ok(transactions.every((t) => t.pages.size > 0));
      // Nothing new: the same position, no transactions.
      const again = wal.readAfter(position);
      assert.equal(again.transactions.length, 0);
      assert.deepEqual(again.position, position);
      insert.run('one more');
      assert.equal(wal.readAfter(position).transactions.length, 1);
      wal.close();
    } finally {
      cleanup();
    }
  });

  it('counts the transactions committed past a position without reading them (a pause, a slow backup)', () => {
    const { path, db, cleanup } = walDatabase();
    try {
      const wal = new WalFile(`${path}-wal`);
      const start = startOf(wal.header()!);
      const { position } = wal.readAfter(start);
      const insert = db.prepare('INSERT INTO t(v) VALUES (?)');
      for (let i = 0; i < 7; i++) insert.run('y'.repeat(3000)); // several pages each: frames outnumber commits
      const committed = wal.committedFrames(position)!;
      assert.ok(committed > position.frame + 7, 'more frames than transactions');
      assert.equal(wal.commitsBetween(position, position.frame, committed), 7);
      assert.equal(wal.commitsBetween(position, position.frame, position.frame), 0);
      // Counted in two steps, as a poll does while the WAL grows.
      insert.run('one more');
      const more = wal.committedFrames(position)!;
      assert.equal(wal.commitsBetween(position, committed, more), 1);
      wal.close();
    } finally {
      cleanup();
    }
  });

  it('stops at a frame whose checksum does not continue the running one', () => {
    const { path, db, cleanup } = walDatabase();
    try {
      for (let i = 0; i < 5; i++) db.prepare('INSERT INTO t(v) VALUES (?)').run(`row ${i}`);
      const wal = new WalFile(`${path}-wal`);
      const header = wal.header()!;
      const all = wal.readAfter(startOf(header)).transactions.length;
      // Flip one byte in the page of the last frame.
      const fd = openSync(`${path}-wal`, 'r+');
      const size = fstatSync(fd).size;
      const byte = Buffer.alloc(1);
      readSync(fd, byte, 0, 1, size - 100);
      byte[0] = byte[0]! ^ 0xff;
      writeSync(fd, byte, 0, 1, size - 100);
      closeSync(fd);
      assert.equal(wal.readAfter(startOf(header)).transactions.length, all - 1);
      wal.close();
    } finally {
      cleanup();
    }
  });

  it('notices a new generation after a checkpoint and restart', () => {
    const { path, db, cleanup } = walDatabase();
    try {
      db.prepare('INSERT INTO t(v) VALUES (?)').run('before');
      const wal = new WalFile(`${path}-wal`);
      const position = startOf(wal.header()!);
      assert.ok(sameGeneration(position, wal.header()));
      db.pragma('wal_checkpoint(RESTART)');
      db.prepare('INSERT INTO t(v) VALUES (?)').run('after');
      assert.equal(sameGeneration(position, wal.header()), false);
      wal.close();
    } finally {
      cleanup();
    }
  });

  it("reads SQLite's WAL index: the frames readers may see, for this generation only", () => {
    const { path, db, cleanup } = walDatabase();
    try {
      for (let i = 0; i < 3; i++) db.prepare('INSERT INTO t(v) VALUES (?)').run(`row ${i}`);
      const wal = new WalFile(`${path}-wal`);
      const start = startOf(wal.header()!);
      const { position, transactions } = wal.readAfter(start);
      assert.ok(position.frame > 0);
      assert.equal(wal.committedFrames(start), position.frame, 'the index counts every committed frame');
      // Frames past the index's count are not read, even though they are valid in the file.
      assert.equal(wal.readAfter(start, undefined, position.frame - 1).transactions.length, transactions.length - 1);
      assert.equal(wal.readAfter(start, undefined, 0).transactions.length, 0);
      db.pragma('wal_checkpoint(RESTART)');
      db.prepare('INSERT INTO t(v) VALUES (?)').run('after');
      assert.equal(wal.committedFrames(start), null, 'an index of another generation says nothing about this one');
      const next = startOf(wal.header()!);
      assert.equal(wal.committedFrames(next), wal.readAfter(next).position.frame);
      wal.close();
    } finally {
      cleanup();
    }
  });

  it('computes the same checksum on the word-at-a-time path as byte by byte', () => {
    const bytes = Buffer.alloc(4096 + 8);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) & 0xff;
    const aligned = Buffer.from(bytes.subarray(0, 4096));
    // At an odd offset the fast path cannot be used: the bytes are read one word at a time.
    const odd = Buffer.alloc(4096 + 1).subarray(1);
    aligned.copy(odd);
    for (const bigEndian of [false, true]) {
      const start: [number, number] = [0xfffffff0, 0x12345678];
      assert.deepEqual(walChecksum(aligned, bigEndian, start), walChecksum(odd, bigEndian, start));
    }
  });

  it('has no header when there is no WAL', () => {
    const wal = new WalFile(join(tmpdir(), `no-such-${process.pid}.db-wal`));
    assert.equal(wal.header(), null);
    assert.equal(wal.size(), 0);
  });
});

