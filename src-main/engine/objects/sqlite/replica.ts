/**
 * The backup's copy of a protected SQLite database. Pages go in through SQLite's own
 * locking, never behind its back: a connection on :memory: ATTACHes the copy and writes each
 * shipped transaction through the sqlite_dbpage virtual table in one SQLite transaction. The
 * copy is kept in WAL mode with synchronous=FULL, so SQLite's WAL is the redo log: a
 * transaction is durable (fsync) when it commits, before we acknowledge it, and a crash
 * mid-way leaves the previous committed state (SQLite rolls the rest back); page writes are
 * absolute, so applying a transaction twice is harmless. Readers of the copy see one
 * committed state of the primary or the next, never a mix.
 */
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ObjectRecord, ObjectStore } from '../object-store.js';
import type { AuditOutcome, LastAudit } from '../../../contract/control.js';
import type { ObjectReporter, ObjectStatus, PeerChannel, ReplicationMessage } from '../folder/channel.js';
import { reportedProgress, reportedStatus, type ReportedProgress } from '../reported-progress.js';
import type { VersionsArea } from '../folder/versions.js';
import { decodePages, lockBytePage } from './page-codec.js';
import { MaxRepairPages } from '../../link/messages.js';
import { DefaultAuditMs } from '../folder/replica.js';
import { hashPage, PageHashBytes, PageHashes } from './page-hashes.js';

/** Page hashes sent per sqlite.hashes message. */
const HashesPerPart = 256 * 1024;
/** Pages hashed per step (the event loop runs in between). */
const HashStepPages = 2048;
/** After a failed apply, wait this long before asking the primary to start over. */
const RetryMs = 2000;

type Incoming = { txid: number; part: number; written: [number, Buffer][]; page1: Buffer | null };
type TxnMessage = Extract<ReplicationMessage, { t: 'sqlite.txn' }>;

export class SqliteReplica {
  private db: Database.Database | null = null;
  private insert: Database.Statement | null = null;
  private hashes = new PageHashes();
  private incoming: Incoming | null = null;
  private connected = false;
  private reported: ReportedProgress | null = null;
  private capture: 'wal' | 'snapshot' = 'wal';
  private error: string | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private txidPersistedAt = 0;
  /** Transactions are applied one message at a time, in order (a page-size change needs an await). */
  private applying: Promise<void> = Promise.resolve();
  /**
   * Each time we send our page hashes, everything the primary sent before it answers them is
   * based on a state we no longer promise to have: until the resync answering our latest
   * request arrives, other transactions are dropped.
   */
  private request = 0;
  private awaitingResync = true;
  private latestAudit: LastAudit | null = null;
  private auditQueue: Promise<unknown> = Promise.resolve();
  /** An audit waiting for the resync that answers its page hashes (request: the hashes it follows). */
  private auditWait: { request: number; resolve: (answer: { pages: number; matched: boolean } | null) => void } | null = null;
  private auditTimer: NodeJS.Timeout | null = null;
  /** The hashes request sent for the admin's resync (0: none): the resync answering it keeps the copy as it was. */
  private resyncRequest = 0;

  constructor(
    private object: ObjectRecord,
    private readonly store: ObjectStore,
    private readonly peer: PeerChannel,
    private readonly report: ObjectReporter,
    private readonly versions: VersionsArea,
    /** How often the continuous audit compares every page with the primary. @default DefaultAuditMs (45 s) */
    private readonly auditEveryMs = DefaultAuditMs,
  ) {}

  get id(): string {
    return this.object.id;
  }

  /** Prepares the copy: a file at DEST that is not ours (a new object) is moved to the versions area first. */
  async start(): Promise<void> {
    mkdirSync(dirname(this.object.target), { recursive: true });
    this.auditTimer = setInterval(() => {
      if (this.connected && !this.awaitingResync && !this.incoming && !this.auditWait && !this.error) void this.audit();
    }, this.auditEveryMs);
    if (this.object.lastSeq === 0) {
      for (const suffix of ['', '-wal', '-shm', '-journal']) {
        const path = `${this.object.target}${suffix}`;
        if (existsSync(path) && (suffix !== '' || statSync(path).size > 0)) {
          const kept = await this.versions.moveAside(path, `database${suffix}`);
          this.report.log.info({ object: this.id, path, kept }, 'a file already at the target was moved to the versions area');
        }
      }
    }
  }

  async stop(): Promise<void> {
    if (this.auditTimer) clearInterval(this.auditTimer);
    this.auditWait?.resolve(null);
    this.linkChanged(false);
    this.store.setLastSeq(this.id, this.object.lastSeq);
    this.close();
  }

  /** The primary announced the database on a (new) connection: tell it what our copy holds. */
  announced(source: string): void {
    this.object = { ...this.object, source };
    this.connected = true;
    this.abortIncoming();
    this.sendHashes();
  }

  linkChanged(connected: boolean): void {
    this.connected = connected;
    if (connected) return;
    this.abortIncoming();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  onMessage(message: ReplicationMessage, body: Buffer): void {
    if ('epoch' in message && message.epoch < this.peer.epoch()) return;
    switch (message.t) {
      case 'sqlite.txn':
        this.applying = this.applying.then(() => this.receive(message, body));
        return;
      case 'folder.progress':
        this.reported = reportedProgress(message);
        return;
      case 'sqlite.rehash':
        if (this.connected) this.sendHashes('resync');
        return;
      default:
        return;
    }
  }

  status(): ObjectStatus {
    return {
      id: this.id,
      kind: 'sqlite',
      source: this.object.source,
      target: this.object.target,
      ...reportedStatus(this.reported, { connected: this.connected, error: this.error, pending: 0 }),
      error: this.error,
      progress: null,
      skipped: 0,
      txid: this.object.lastSeq,
      capture: this.capture,
      lastAudit: this.latestAudit,
    };
  }

  lastAudit(): LastAudit | null {
    return this.latestAudit;
  }

  /**
   * Audits the copy: every page of it as it is on disk is hashed and compared, at the last
   * transaction applied, with the page hashes that transaction left — the state whose checksum
   * matched the primary's. Nothing travels while they agree; transactions arriving meanwhile
   * wait (they are not dropped). When pages differ, the copy's hashes go to the primary, which
   * sends the pages that differ (the repair: the copy as it was goes to the versions area
   * first). Never throws.
   */
  audit(): Promise<AuditOutcome> {
    // One audit at a time: one asked for while another runs waits for it, then looks again.
    const next = this.auditQueue.then(() => this.auditNow());
    this.auditQueue = next.catch(() => undefined);
    return next;
  }

  private async auditNow(): Promise<AuditOutcome> {
    const started = performance.now();
    const finish = (result: LastAudit['result'], differences: number, repaired: number, detail: string | null): AuditOutcome => {
      const audit: AuditOutcome = { id: this.id, kind: 'sqlite', at: new Date().toISOString(), result, differences, repaired, scope: 'pages', ms: Math.round(performance.now() - started), detail };
      this.latestAudit = { at: audit.at, result, differences, repaired, scope: audit.scope, ms: audit.ms, detail };
      this.peer.send({ t: 'audit.report', epoch: this.peer.epoch(), objectId: this.id, audit: this.latestAudit });
      if (result === 'repaired') this.report.event('audit.repaired', `${differences} page(s) of the copy ${this.object.target} differed from the primary's and were rewritten from it (${repaired} pages sent)`, { object: this.id, differences, repaired, scope: 'pages' });
      else if (result === 'failed' && differences > 0) this.report.event('audit.failed', `the copy ${this.object.target} differed from the primary's (${differences} pages) and could not be repaired: ${detail}`, { object: this.id, differences, scope: 'pages' });
      return audit;
    };
    // Right after connecting, the copy is being compared with the primary anyway: wait for that.
    const deadline = performance.now() + 30_000;
    while (this.connected && (this.awaitingResync || this.incoming) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    if (!this.connected) return finish('failed', 0, 0, 'the primary is not connected');
    if (this.awaitingResync || this.error) return finish('failed', 0, 0, this.error ?? 'the copy is still being compared with the primary');
    let damaged: number[];
    try {
      damaged = await this.compareWithApplied();
    } catch (error) {
      return finish('failed', 0, 0, `cannot read the copy: ${(error as Error).message}`);
    }
    const differing = damaged.length;
    if (differing === 0) return finish('clean', 0, 0, null);
    const answer = await new Promise<{ pages: number; matched: boolean } | null>((resolve) => {
      const timer = setTimeout(() => done(null), 120_000);
      const done = (value: { pages: number; matched: boolean } | null) => {
        clearTimeout(timer);
        this.auditWait = null;
        resolve(value);
      };
      this.auditWait = { request: 0, resolve: done };
      if (differing > MaxRepairPages) {
        this.sendHashes('audit');
        return;
      }
      // Only the damaged pages' numbers travel; transactions keep being applied meanwhile (none
      // is dropped), and the answer, computed against what the primary shipped, follows them.
      this.request += 1;
      this.auditWait.request = this.request;
      if (!this.peer.send({ t: 'sqlite.repair', epoch: this.peer.epoch(), objectId: this.id, request: this.request, pages: damaged })) done(null);
    });
    if (!answer) return finish('failed', differing, 0, this.error ?? 'the primary did not answer with the pages that differ');
    if (!answer.matched) return finish('failed', differing, answer.pages, 'after the repair the copy still did not match the primary (a resync follows)');
    return finish('repaired', differing, answer.pages, null);
  }

  /**
   * How many pages of the copy on disk differ from the hashes of the transactions applied
   * (missing or extra pages included). Read in steps, each between two transactions (in the
   * apply queue), so a large copy never holds replication up for long and each step compares
   * the disk with exactly the state the transactions so far left.
   */
  private async compareWithApplied(): Promise<number[]> {
    const damaged: number[] = [];
    for (let first = 1; ; first += HashStepPages) {
      const step = await this.betweenTransactions(() => {
        const db = this.open();
        // Pages cached from an earlier read would hide what changed on disk since: read the file itself.
        db.pragma('shrink_memory');
        const pages = Number(db.pragma('replica.page_count', { simple: true }));
        const found: number[] = [];
        const rows = db.prepare("SELECT pgno, data FROM sqlite_dbpage('replica') WHERE pgno BETWEEN ? AND ?").iterate(first, first + HashStepPages - 1) as Iterable<{ pgno: number; data: Buffer }>;
        for (const row of rows) {
          const expected = this.hashes.get(row.pgno);
          if (row.pgno <= this.hashes.pages && (!expected || !expected.equals(hashPage(row.pgno, row.data)))) found.push(row.pgno);
        }
        // The last step also names the pages the copy lacks (truncated); pages beyond the
        // primary's go with the repair, which says the database's size.
        const done = first + HashStepPages > Math.max(pages, this.hashes.pages);
        if (done) for (let pgno = pages + 1; pgno <= this.hashes.pages; pgno++) found.push(pgno);
        if (done && pages > this.hashes.pages) found.push(this.hashes.pages > 0 ? this.hashes.pages : 1);
        return { found, done };
      });
      damaged.push(...step.found);
      if (step.done) return damaged;
    }
  }

  /** Runs work in the apply queue: after the transaction being applied, before the next. */
  private betweenTransactions<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.applying = this.applying.then(() => {
        try {
          resolve(work());
        } catch (error) {
          reject(error as Error);
        }
      });
    });
  }

  private async keepDamagedCopy(): Promise<void> {
    for (const suffix of ['', '-wal']) {
      const path = `${this.object.target}${suffix}`;
      if (existsSync(path)) await this.versions.keepCopy(path, `database${suffix}`);
    }
  }

  // --- the copy ----------------------------------------------------------------------------

  private open(): Database.Database {
    if (this.db) return this.db;
    // Writing page 1 through a connection whose main schema is the copy makes SQLite re-read
    // a half-written schema: the copy is attached to a connection on :memory: instead.
    const db = new Database(':memory:');
    // better-sqlite3's defensive mode makes sqlite_dbpage read-only.
    db.unsafeMode(true);
    db.prepare('ATTACH DATABASE ? AS replica').run(this.object.target);
    if (Number(db.pragma('replica.page_count', { simple: true })) > 0) this.useWal(db);
    this.db = db;
    this.insert = db.prepare("INSERT INTO sqlite_dbpage(pgno, data, schema) VALUES (?, ?, 'replica')");
    return db;
  }

  private useWal(db: Database.Database): void {
    db.pragma('replica.journal_mode = WAL');
    db.pragma('replica.synchronous = FULL');
  }

  private close(): void {
    try {
      this.db?.close();
    } catch {
      // already closed
    }
    this.db = null;
    this.insert = null;
  }

  /**
   * Hashes every page of the copy (as it is on disk now) and sends them to the primary;
   * transactions wait meanwhile. `purpose` says who asked: an audit, the admin (resync), or
   * neither (a connection, a mismatch, a retry).
   */
  private sendHashes(purpose: 'audit' | 'resync' | null = null): void {
    this.awaitingResync = true;
    this.applying = this.applying.then(() => this.hashAndSend(purpose));
  }

  private async hashAndSend(purpose: 'audit' | 'resync' | null): Promise<void> {
    if (!this.connected) return;
    try {
      const db = this.open();
      db.pragma('shrink_memory');
      const hashes = new PageHashes();
      const pages = Number(db.pragma('replica.page_count', { simple: true }));
      const read = db.prepare("SELECT pgno, data FROM sqlite_dbpage('replica') WHERE pgno BETWEEN ? AND ?");
      // In steps, so that a large copy does not hold the node's main thread for seconds.
      for (let first = 1; first <= pages; first += HashStepPages) {
        for (const row of read.iterate(first, first + HashStepPages - 1) as Iterable<{ pgno: number; data: Buffer }>) {
          hashes.setHash(row.pgno, hashPage(row.pgno, row.data));
        }
        await new Promise((resolve) => setImmediate(resolve));
      }
      this.hashes = hashes;
    } catch (error) {
      this.failed(`cannot read the copy ${this.object.target}: ${(error as Error).message}`);
      return;
    }
    if (!this.connected) return;
    this.request += 1;
    this.awaitingResync = true;
    // Only the answer to our latest hashes is applied: a pending audit waits for that one.
    if (this.auditWait) this.auditWait.request = this.request;
    if (purpose === 'resync') this.resyncRequest = this.request;
    const all = this.hashes.toBuffer();
    const parts = Math.max(1, Math.ceil(all.length / (HashesPerPart * PageHashBytes)));
    for (let part = 0; part < parts; part++) {
      const body = all.subarray(part * HashesPerPart * PageHashBytes, (part + 1) * HashesPerPart * PageHashBytes);
      this.peer.send({ t: 'sqlite.hashes', epoch: this.peer.epoch(), objectId: this.id, txid: this.object.lastSeq, request: this.request, part, last: part === parts - 1, ...(purpose === 'audit' ? { audit: true } : purpose === 'resync' ? { resync: true } : {}) }, body);
    }
  }

  private async receive(message: TxnMessage, body: Buffer): Promise<void> {
    if (!this.connected || this.retryTimer) return;
    if (message.part === 0 && this.awaitingResync) {
      if (!message.snapshot || message.basis !== this.request) return;
      this.awaitingResync = false;
    }
    if (this.awaitingResync) return;
    try {
      // An audit's repair or the admin's resync: the copy as it was goes to the versions area before any page of it is rewritten.
      const kept = this.auditWait?.request === message.basis || this.resyncRequest === message.basis;
      if (message.part === 0 && message.snapshot && body.length > 0 && kept) await this.keepDamagedCopy();
      if (message.part === 0 && !(await this.begin(message))) return;
      else if (!this.incoming || this.incoming.txid !== message.txid || this.incoming.part + 1 !== message.part) {
        throw new Error(`part ${message.part} of transaction ${message.txid} arrived out of order`);
      }
      const incoming = this.incoming!;
      incoming.part = message.part;
      const lockPage = lockBytePage(message.pageSize);
      for (const [pgno, data] of decodePages(body, message.pageSize)) {
        const page = pgno === 1 ? keepWalMode(data) : data;
        // Page 1 holds the schema cookie: written last (in commit), or the next statement would
        // see a new cookie, reload the schema from half-written pages and fail (SQLITE_CORRUPT).
        if (pgno === 1) incoming.page1 = Buffer.from(page);
        // Never written (see lockBytePage), but hashed as read, the same on both sides.
        else if (pgno !== lockPage) this.insert!.run(pgno, page);
        incoming.written.push([pgno, hashPage(pgno, page)]);
      }
      if (message.last) this.commit(message);
    } catch (error) {
      this.abortIncoming();
      this.failed(`applying transaction ${message.txid} to ${this.object.target} failed: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }

  /** False when the transaction cannot go into this copy (the primary was asked to start over). */
  private async begin(message: TxnMessage): Promise<boolean> {
    this.abortIncoming();
    const db = this.open();
    const pages = Number(db.pragma('replica.page_count', { simple: true }));
    const pageSize = Number(db.pragma('replica.page_size', { simple: true }));
    if (pages > 0 && pageSize !== message.pageSize) {
      // A copy with another page size cannot take these pages: start a new file (the old one is kept as a version).
      this.close();
      for (const suffix of ['', '-wal', '-shm']) {
        const path = `${this.object.target}${suffix}`;
        if (existsSync(path)) await this.versions.moveAside(path, `database${suffix}`);
      }
      this.hashes = new PageHashes();
      this.open();
      // The primary's differences were against the old file: ask again from an empty copy.
      this.sendHashes();
      return false;
    }
    if (Number(db.pragma('replica.page_count', { simple: true })) === 0) db.pragma(`replica.page_size = ${message.pageSize}`);
    db.exec('BEGIN IMMEDIATE');
    this.incoming = { txid: message.txid, part: -1, written: [], page1: null };
    this.capture = message.capture;
    return true;
  }

  private commit(message: TxnMessage): void {
    const db = this.db!;
    const incoming = this.incoming!;
    // Our page hashes mirror the copy's size: asking SQLite (PRAGMA page_count) inside this
    // transaction makes it read the half-written schema and fail with SQLITE_CORRUPT.
    const before = this.hashes.pages;
    if (message.dbPages < before) this.insert!.run(message.dbPages + 1, null); // a NULL page truncates from there
    if (incoming.page1) this.insert!.run(1, incoming.page1);
    const wasEmpty = this.hashes.pages === 0;
    db.exec('COMMIT');
    // sqlite_dbpage replaces a cached page's bytes but not SQLite's parse of it (cell count
    // and offsets; the backup API resets it, dbpage does not): after a DROP TABLE the next
    // schema load read page 1 with its old cell count and failed (SQLITE_CORRUPT). Emptying
    // the page cache drops every parse.
    db.pragma('shrink_memory');
    this.incoming = null;
    // The first transaction into an empty file was written in rollback-journal mode; reopen so
    // that this connection, like every reader, now uses WAL (page 1 says so).
    if (wasEmpty) {
      this.close();
      this.useWal(this.open());
    }
    for (const [pgno, hash] of incoming.written) this.hashes.setHash(pgno, hash);
    this.hashes.truncate(message.dbPages);
    this.object = { ...this.object, lastSeq: message.txid };
    // The node's store fsyncs each write: the applied txid is recorded at most every 200 ms
    // (it only numbers transactions; the copy itself is the truth, compared by hashes on connect).
    if (Date.now() - this.txidPersistedAt >= 200) {
      this.txidPersistedAt = Date.now();
      this.store.setLastSeq(this.id, message.txid);
    }
    const matched = message.checksum === this.hashes.checksum();
    if (message.snapshot && this.auditWait && message.basis === this.auditWait.request) this.auditWait.resolve({ pages: incoming.written.length, matched });
    this.peer.send({ t: 'sqlite.ack', epoch: this.peer.epoch(), objectId: this.id, txid: message.txid, matched });
    if (this.error) {
      this.error = null;
      this.report.event('sqlite.recovered', `${this.object.target}: applying transactions works again`, { object: this.id });
    }
    if (!matched) {
      this.report.event('sqlite.diverged', `${this.object.target} does not match the primary after transaction ${message.txid} (state checksum differs); asking for a resync`, { object: this.id, txid: message.txid });
      this.sendHashes();
    }
  }

  private abortIncoming(): void {
    this.incoming = null;
    try {
      if (this.db?.inTransaction) this.db.exec('ROLLBACK');
    } catch {
      // nothing to roll back
    }
  }

  /** Reported once; after a pause the primary is asked to start over from what the copy holds. */
  private failed(message: string): void {
    if (this.error !== message) this.report.event('sqlite.error', `${message}; retrying`, { object: this.id });
    this.error = message;
    this.close();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.connected) this.sendHashes();
    }, RetryMs);
  }
}

/** The copy stays in WAL mode (header bytes 18 and 19 = 2) whatever the primary's journal mode. */
function keepWalMode(page: Buffer): Buffer {
  if (page[18] === 2 && page[19] === 2) return page;
  const copy = Buffer.from(page);
  copy[18] = 2;
  copy[19] = 2;
  return copy;
}
