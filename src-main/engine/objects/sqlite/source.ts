/**
 * The primary's side of a protected SQLite database, captured without touching the
 * application: for a WAL database we tail the WAL from our own process (whole committed
 * transactions only, salts and checksums verified) while a guard read transaction keeps the
 * WAL from being reset under us; a rollback-journal database is captured by snapshots under
 * a read transaction, shipping only the pages whose hashes changed.
 *
 * Safety rule: the only way to ship something that is not a WAL transaction read in order
 * is a resync — a consistent snapshot compared page by page with what the backup has. Any
 * WAL reset is treated that way (we never infer that a reset was harmless), and so are a
 * database replaced under its path, a backup that fell too far behind, and a checksum
 * mismatch reported by the backup.
 */
import Database from 'better-sqlite3';
import { openSync, readSync, closeSync, statSync } from 'node:fs';
import type { ObjectRecord, ObjectStore } from '../object-store.js';
import type { ObjectReporter, ObjectStatus, PeerChannel, ReplicationMessage } from '../folder/channel.js';
import { PageHashes, hashPage } from './page-hashes.js';
import { encodePages } from './page-codec.js';
import { sameGeneration, startOf, WalFile, type WalPosition, type WalTransaction } from './wal.js';
import { EmptyStage, stage, ThroughputMeter, totals } from '../stages.js';
import type { ObjectStages } from '../../../contract/control.js';

/** How often the WAL (or a rollback database's change counter) is looked at. @default 2 ms */
export const DefaultPollMs = 2;
/**
 * Once caught up and the WAL is this big (and at least a quarter of the database), we let it
 * be checkpointed and reset, then resync: a resync reads the whole database, so it is spread
 * over at least a quarter of its size in WAL.
 */
/** The reason given for a resync that answers an audit's page hashes. */
const AuditReason = 'an audit compared every page';
/** The reason given for a resync the admin asked for (`understudy resync`). */
const AdminReason = 'a resync was asked for (understudy resync)';
/** An admin's resync that has no answer by then is given up (the status stops saying catching-up). */
const ResyncTimeoutMs = 10 * 60_000;
/** Stands for a page the backup found damaged: no page hashes to it. */
const DamagedPage = Buffer.alloc(16);
const CheckpointWalBytes = Number(process.env.UNDERSTUDY_WAL_RESET_BYTES) || 64 * 1024 * 1024;
const CheckpointWalShare = 0.25;
/** Past this many times the checkpoint bound, the WAL is let go even while the application writes on (see poll). */
const BusyCheckpointFactor = 4;
/** Transactions shipped and not yet acknowledged beyond which we wait before reading more (see poll). */
const MaxInFlight = 2;
/**
 * ...but never longer than this for an acknowledgement: an ack that does not come (a role change
 * under way, a transaction the backup set aside) must not stop replication — shipping on lets a
 * later ack, or the state checksum's resync, settle it. A fault test stalled without this bound.
 */
const InFlightWaitMs = 250;
/** A backup this far behind (WAL bytes not yet shipped) stops pinning the WAL; it gets a resync later. */
const MaxWalBytesBehind = 512 * 1024 * 1024;
/** Pages of a resync sent per message. */
const PartBytes = 4 * 1024 * 1024;
/** Pages read per step of a snapshot, between which the event loop runs. */
const SnapshotStepPages = 2048;
/** How long a read of the application's database waits for its writer's lock. */
const ReadBusyMs = 200;
/** A rollback-journal database is snapshotted at most this often while it keeps changing. */
const SnapshotEveryMs = 20;
const SqliteMagic = Buffer.from('SQLite format 3\0', 'latin1');

type Capture = 'wal' | 'snapshot';
/** A resync that answers the backup's sqlite.hashes request: its hashes are the baseline. */
type Answer = { baseline: PageHashes; request: number };
type Phase = 'idle' | 'awaiting-hashes' | 'syncing' | 'tailing' | 'behind';
/** What the admin's resync found: the pages that differed, and whether the backup's copy then matched. */
export interface SqliteResyncResult {
  pages: number;
  matched: boolean;
}

export class SqliteSource {
  private writer: Database.Database | null = null;
  private guard: Database.Database | null = null;
  private wal: WalFile;
  private capture: Capture = 'wal';
  private position: WalPosition | null = null;
  /** Page hashes of the state shipped so far (what the backup will have once it applied everything sent). */
  private shipped: PageHashes | null = null;
  private txid: number;
  private ackedTxid: number;
  /** When each unacknowledged transaction was seen committed on the primary (wall ms), and the bytes of its pages. */
  private readonly unacked = new Map<number, { at: number; bytes: number }>();
  private readonly throughput = new ThroughputMeter();
  /**
   * Committed in the WAL (or, for a rollback-journal database, a change counter that moved)
   * but not read yet — paused, or the link backed up: since when, how many frames counted so
   * far and how many transactions (commit frames) among them.
   */
  private unread: { since: number; frame: number; commits: number } | null = null;
  /** A resync that a pause holds back, run at the resume. */
  private held: { reason: string; answer: Answer | undefined; since: number } | null = null;
  /** When the resync being read and sent now started (null: none). */
  private syncStartedAt: number | null = null;
  /** The admin's resync: the txid of the sync that answers it once sent, then its ack resolves it. */
  private resyncWaiter: { txid: number | null; pages: number; resolve: (result: SqliteResyncResult) => void; reject: (error: Error) => void; timer: NodeJS.Timeout } | null = null;
  private phase: Phase = 'idle';
  private hashParts: Buffer[] = [];
  private pollTimer: NodeJS.Timeout | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private error: string | null = null;
  private identity: { dev: number; ino: number } | null = null;
  private changeCounter: Buffer | null = null;
  private lastSnapshotAt = 0;
  private syncing: Promise<void> = Promise.resolve();
  private stopped = false;
  private initialStartedAt = Date.now();
  /** The backup's latest sqlite.hashes request: our resyncs say which one they answer. */
  private basis = 0;
  /** Counts link changes: a sync requested on an earlier connection does not run on this one. */
  private connection = 0;

  constructor(
    private object: ObjectRecord,
    private readonly store: ObjectStore,
    private readonly peer: PeerChannel,
    private readonly report: ObjectReporter,
    private readonly pollMs = DefaultPollMs,
  ) {
    this.wal = new WalFile(`${object.source}-wal`);
    this.txid = object.lastSeq;
    this.ackedTxid = object.ackedSeq;
  }

  get id(): string {
    return this.object.id;
  }

  /** Opens the database; a database that cannot be opened is reported, and retried at each connection. */
  start(): void {
    this.initialStartedAt = Date.now();
    this.openDatabase();
    this.progressTimer = setInterval(() => this.sendProgress(), 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.endResync(new LinkLost());
    this.store.setLastSeq(this.id, this.txid);
    this.store.setAcked(this.id, this.ackedTxid);
    if (this.progressTimer) clearInterval(this.progressTimer);
    this.stopPolling();
    await this.syncing.catch(() => undefined);
    this.closeDatabase();
  }

  /** Ships whatever is committed now (a switchover drains after it). */
  async flush(): Promise<void> {
    await this.syncing.catch(() => undefined);
    if (this.phase === 'tailing' && this.shipped) {
      try {
        this.poll();
      } catch {
        // the next regular poll reports it
      }
    }
  }

  linkChanged(connected: boolean): void {
    this.connection += 1;
    this.stopPolling();
    this.releaseGuard();
    this.hashParts = [];
    this.unacked.clear();
    this.unread = null;
    // A new connection starts from the backup's hashes: a resync held for the old one is moot.
    this.held = null;
    this.endResync(new LinkLost());
    this.phase = connected ? 'awaiting-hashes' : 'idle';
    if (!connected) return;
    if (!this.writer) this.openDatabase();
    // The backup answers with the hashes of its copy; everything starts from there.
    this.peer.send({ t: 'folder.object', epoch: this.peer.epoch(), position: { epoch: this.peer.epoch(), seq: this.txid }, objectId: this.id, source: this.object.source, target: this.object.target, removed: false, kind: 'sqlite' });
  }

  onMessage(message: ReplicationMessage, body: Buffer): void {
    switch (message.t) {
      case 'sqlite.hashes': {
        if (message.part === 0) this.hashParts = [];
        this.hashParts.push(body);
        if (!message.last) return;
        const baseline = PageHashes.fromBuffer(Buffer.concat(this.hashParts));
        this.hashParts = [];
        this.basis = message.request;
        // Transaction ids keep growing across restarts of either side.
        this.txid = Math.max(this.txid, message.txid);
        this.ackedTxid = Math.max(this.ackedTxid, message.txid);
        this.unacked.clear();
        this.requestSync(message.resync ? AdminReason : message.audit ? AuditReason : 'the backup connected', { baseline, request: message.request });
        return;
      }
      case 'sqlite.repair': {
        // What we shipped is what the backup holds (it applies every transaction in order, and
        // this request came after them), except the pages it found damaged: those differ.
        const baseline = this.shipped ? PageHashes.fromBuffer(this.shipped.toBuffer()) : new PageHashes();
        for (const pgno of message.pages) if (pgno <= baseline.pages) baseline.setHash(pgno, DamagedPage);
        this.basis = message.request;
        this.requestSync(AuditReason, { baseline, request: message.request });
        return;
      }
      case 'sqlite.ack':
        this.acknowledge(message.txid);
        if (typeof this.resyncWaiter?.txid === 'number' && message.txid >= this.resyncWaiter.txid) this.endResync(null, { pages: this.resyncWaiter.pages, matched: message.matched });
        return;
      default:
        return;
    }
  }

  status(): ObjectStatus {
    const now = Date.now();
    const stages = this.stages(now);
    const { lagMs, pending } = totals(stages);
    return {
      id: this.id,
      kind: 'sqlite',
      source: this.object.source,
      target: this.object.target,
      state: this.state(pending),
      lagMs,
      pending,
      error: this.error,
      progress: null,
      skipped: 0,
      txid: this.ackedTxid,
      capture: this.capture,
      stages,
      throughput: this.throughput.rate(now),
      paused: this.object.paused,
    };
  }

  /**
   * capture: transactions committed in the WAL (the application's own journal) that we have not
   * read yet — while paused, while the link is backed up, or while MaxInFlight transactions
   * wait for their acknowledgement (its age counts from when we first
   * saw them, within a poll); send: a resync being compared and sent, or held by a pause (one
   * change; a WAL transaction goes to the link as soon as it is read); apply: sent, not yet
   * acknowledged — the backup acknowledges a transaction once it is applied (durable).
   */
  private stages(now: number): ObjectStages {
    // Insertion order is txid order: the first entry is the oldest.
    const oldest = this.unacked.size > 0 ? this.unacked.values().next().value!.at : null;
    const sending = this.syncStartedAt ?? this.held?.since ?? null;
    return {
      capture: this.unread ? stage(Math.max(1, this.unread.commits), this.unread.since, now) : EmptyStage,
      send: sending === null ? EmptyStage : stage(1, sending, now),
      apply: stage(this.unacked.size, oldest, now),
    };
  }

  private state(pending: number): ObjectStatus['state'] {
    if (this.error) return 'error';
    if (this.object.paused) return 'paused';
    if (!this.object.initialDone) return 'initial-sync';
    if (this.phase === 'idle') return 'paused';
    if (pending === 0 && this.phase === 'tailing' && !this.resyncWaiter) return 'in-sync';
    return 'catching-up';
  }

  /**
   * Pauses (true) or resumes sending this database's changes. While paused nothing is read or
   * sent: committed transactions wait in the WAL, which our read transaction keeps from being
   * reset (up to MaxWalBytesBehind; past it the resume resyncs every page instead).
   */
  setPaused(paused: boolean): void {
    this.store.setPaused(this.id, paused);
    this.object.paused = paused;
    if (!paused) {
      const held = this.held;
      this.held = null;
      if (held) this.requestSync(held.reason, held.answer);
      else if (this.phase === 'tailing') this.startPolling();
    }
    this.sendProgress();
  }

  /**
   * `understudy resync`: the backup hashes every page of its copy as it is on disk (keeping the
   * copy as it was in its versions area), we compare them with ours and send what differs.
   * Resolves once the backup has applied it; rejects when the link is lost or after ResyncTimeoutMs.
   */
  resync(): Promise<SqliteResyncResult> {
    return new Promise((resolve, reject) => {
      this.endResync(new Error('another resync started'));
      const timer = setTimeout(() => this.endResync(new Error(`no answer from the backup within ${ResyncTimeoutMs / 60_000} minutes`)), ResyncTimeoutMs);
      this.resyncWaiter = { txid: null, pages: 0, resolve, reject, timer };
      if (!this.peer.send({ t: 'sqlite.rehash', epoch: this.peer.epoch(), objectId: this.id })) this.endResync(new LinkLost());
    });
  }

  private endResync(error: Error | null, result?: SqliteResyncResult): void {
    const waiter = this.resyncWaiter;
    if (!waiter) return;
    this.resyncWaiter = null;
    clearTimeout(waiter.timer);
    if (error) waiter.reject(error);
    else waiter.resolve(result!);
  }

  private acknowledge(txid: number): void {
    if (txid > this.ackedTxid) {
      this.ackedTxid = txid;
      this.persistAcked();
    }
    let bytes = 0;
    let changes = 0;
    for (const [id, sent] of [...this.unacked]) {
      if (id > txid) continue;
      bytes += sent.bytes;
      changes += 1;
      this.unacked.delete(id);
    }
    this.throughput.record(bytes, changes, Date.now());
    this.checkInitialDone();
  }

  private checkInitialDone(): void {
    if (!this.object.initialDone && this.phase === 'tailing' && this.unacked.size === 0) {
      this.object.initialDone = true;
      this.store.setInitial(this.id, { initialDone: true });
      this.report.event('sqlite.in-sync', `initial sync of ${this.object.source} is complete`, { object: this.id, ms: Date.now() - this.initialStartedAt });
    }
  }

  private sendProgress(): void {
    if (!this.peer.connected()) return;
    const status = this.status();
    this.peer.send({ t: 'folder.progress', epoch: this.peer.epoch(), objectId: this.id, state: status.state, lagMs: status.lagMs, pending: status.pending, stages: status.stages, throughput: status.throughput, paused: status.paused });
  }

  // --- the database ---------------------------------------------------------------------

  private openDatabase(): void {
    try {
      checkIsSqlite(this.object.source);
      // Our connections never checkpoint on their own (wal_autocheckpoint=0): when the WAL is
      // checkpointed and reset is the one thing we must know about.
      this.writer = new Database(this.object.source, { fileMustExist: true, timeout: 0 });
      this.writer.pragma('wal_autocheckpoint = 0');
      // Reads wait a little for a rollback-journal writer (its exclusive lock is brief); our
      // write barrier never waits (the writer connection's timeout is 0).
      this.guard = new Database(this.object.source, { fileMustExist: true, timeout: ReadBusyMs });
      this.guard.pragma('wal_autocheckpoint = 0');
      // Reading the journal mode also proves the file is readable (not encrypted, not locked).
      this.capture = this.journalMode() === 'wal' ? 'wal' : 'snapshot';
      const stat = statSync(this.object.source);
      this.identity = { dev: stat.dev, ino: stat.ino };
      this.recovered();
    } catch (error) {
      this.closeDatabase();
      this.fail(describeOpenError(this.object.source, error));
    }
  }

  private closeDatabase(): void {
    this.releaseGuard();
    for (const db of [this.writer, this.guard]) {
      try {
        db?.close();
      } catch {
        // closing twice, or a connection that failed half-open
      }
    }
    this.writer = null;
    this.guard = null;
    this.wal.close();
  }

  private journalMode(): string {
    return String(this.guard!.pragma('journal_mode', { simple: true })).toLowerCase();
  }

  private fail(message: string): void {
    if (this.error === message) return;
    this.error = message;
    this.report.event('sqlite.error', `${message}; nothing is replicated until it is fixed`, { object: this.id });
  }

  private recovered(): void {
    if (!this.error) return;
    this.error = null;
    this.report.event('sqlite.recovered', `${this.object.source} can be read again`, { object: this.id });
  }

  private releaseGuard(): void {
    try {
      if (this.guard?.inTransaction) this.guard.exec('COMMIT');
    } catch {
      // the connection is gone
    }
  }

  /** Starts a read transaction on the guard connection: its snapshot is the state now. */
  private takeGuard(): void {
    this.releaseGuard();
    this.guard!.exec('BEGIN');
    this.guard!.prepare('SELECT count(*) FROM sqlite_master').pluck().get();
  }

  // --- resync: a consistent snapshot compared page by page ------------------------------

  /** Without `answer`, a resync of what we shipped (the backup applies it in order, after the rest). */
  private requestSync(reason: string, answer?: Answer): void {
    this.stopPolling();
    this.phase = 'syncing';
    const connection = this.connection;
    this.syncing = this.syncing
      .then(() => this.sync(reason, answer, connection))
      .catch((error: unknown) => {
        // Paused before it started: it runs at the resume.
        if (error instanceof Held) {
          this.held = { reason, answer, since: Date.now() };
          return;
        }
        // A lost link is no error of the database: the next connection starts a new sync.
        if (error instanceof LinkLost || !this.peer.connected() || this.stopped || connection !== this.connection) return;
        if (!(error instanceof Reported)) this.fail(describeOpenError(this.object.source, error));
        this.closeDatabase();
        this.retryAfterError(answer);
      });
  }

  /** Every second until it works: the database may come back (restored, unlocked, replaced). */
  private retryAfterError(answer: Answer | undefined): void {
    setTimeout(() => {
      if (this.stopped || this.phase !== 'syncing' || !this.peer.connected()) return;
      this.openDatabase();
      if (this.writer) this.requestSync('retry after an error', answer);
      else this.retryAfterError(answer);
    }, 1000);
  }

  private async sync(reason: string, answer: Answer | undefined, connection: number): Promise<void> {
    const lost = () => this.stopped || !this.peer.connected() || connection !== this.connection;
    if (lost()) return;
    // The backup drops the answer to an older request; the newer one is queued behind us.
    if (answer && answer.request !== this.basis) return;
    // A sync queued behind another starts just as that one started polling: a poll meanwhile
    // would ship from our snapshot's position with an older `shipped`, and take our txid.
    this.stopPolling();
    this.phase = 'syncing';
    // Paused: it waits for the resume (one already under way finishes: it is bounded, and the
    // backup would otherwise hold a half-applied transaction open for the whole pause).
    if (this.object.paused) throw new Held();
    this.syncStartedAt = Date.now();
    try {
      await this.syncNow(reason, answer, lost);
    } finally {
      this.syncStartedAt = null;
    }
  }

  private async syncNow(reason: string, answer: Answer | undefined, lost: () => boolean): Promise<void> {
    if (!this.writer || this.databaseReplaced()) {
      this.closeDatabase();
      this.openDatabase();
      if (!this.writer) throw new Reported();
    }
    await this.snapshotPoint();
    this.unread = null;
    const startedAt = Date.now();
    const guard = this.guard!;
    const pageSize = Number(guard.pragma('page_size', { simple: true }));
    const pageCount = Number(guard.pragma('page_count', { simple: true }));
    const read = guard.prepare('SELECT pgno, data FROM sqlite_dbpage WHERE pgno BETWEEN ? AND ?');
    const state = new PageHashes(Math.max(1, pageCount));
    const txid = ++this.txid;
    // Only an answer may end the backup's wait for one: it alone was compared with the backup's
    // copy. Ours are compared with what we shipped (the latest, as earlier syncs replace it),
    // or with nothing, every page sent.
    const basis = answer?.request ?? 0;
    const baseline = answer?.baseline ?? this.shipped ?? new PageHashes();
    let part = 0;
    let batch: [number, Buffer][] = [];
    let batchBytes = 0;
    let differing = 0;
    const flush = async (last: boolean) => {
      const sent = this.peer.send(
        { t: 'sqlite.txn', epoch: this.peer.epoch(), objectId: this.id, txid, part: part++, last, pageSize, dbPages: pageCount, checksum: last ? state.checksum() : null, snapshot: true, basis, capture: this.capture },
        encodePages(batch, pageSize),
      );
      batch = [];
      batchBytes = 0;
      if (!sent) throw new LinkLost();
      if (this.peer.backedUp()) await this.peer.drained();
    };
    for (let first = 1; first <= pageCount; first += SnapshotStepPages) {
      for (const row of read.iterate(first, Math.min(pageCount, first + SnapshotStepPages - 1)) as Iterable<{ pgno: number; data: Buffer }>) {
        const hash = hashPage(row.pgno, row.data);
        state.setHash(row.pgno, hash);
        const theirs = baseline.get(row.pgno);
        if (theirs && theirs.equals(hash)) continue;
        batch.push([row.pgno, row.data]);
        batchBytes += row.data.length;
        differing += 1;
        if (batchBytes >= PartBytes) await flush(false);
      }
      // Let the heartbeat's reports, acks and the control socket in between steps.
      await new Promise((resolve) => setImmediate(resolve));
      if (lost()) throw new LinkLost();
    }
    // Recorded before the last part goes: its ack may arrive while we wait for the link to drain.
    this.unacked.set(txid, { at: startedAt, bytes: differing * pageSize });
    // Any resync that answers the backup's hashes compared every page of its copy: it answers the admin's too.
    if (answer && this.resyncWaiter?.txid === null) Object.assign(this.resyncWaiter, { txid, pages: differing });
    await flush(true);
    if (lost()) throw new LinkLost();
    this.shipped = state;
    this.store.setLastSeq(this.id, txid);
    this.report.log.info({ object: this.id, txid, pages: pageCount, differing, reason, ms: Date.now() - startedAt }, 'database resync sent');
    // A connection's or an audit's comparison is routine (an audit reports on the backup what it found).
    if (reason !== 'the backup connected' && reason !== AuditReason) {
      this.report.event('sqlite.resync', `${this.object.source}: ${reason}; compared every page and sent the ${differing} that differed`, { object: this.id, pages: differing });
    }
    if (this.capture === 'snapshot') this.releaseGuard();
    this.phase = 'tailing';
    this.checkInitialDone();
    this.startPolling();
  }

  /**
   * Takes the guard's snapshot at a known WAL position: under a brief write barrier (our own
   * BEGIN IMMEDIATE, so no one can commit meanwhile) the guard starts its read transaction
   * and we walk the WAL to its last commit frame. The barrier lasts a few milliseconds.
   */
  private async snapshotPoint(): Promise<void> {
    this.capture = this.journalMode() === 'wal' ? 'wal' : 'snapshot';
    if (this.capture === 'snapshot') {
      this.takeGuard();
      this.changeCounter = readChangeCounter(this.object.source);
      this.position = null;
      return;
    }
    let pinned = false;
    let pins = 0;
    for (let waits = 0; ; ) {
      if (!this.peer.connected() || this.stopped) throw new LinkLost();
      // The application may hold its write lock for long (a large transaction): wait for it.
      if (!(await this.barrier(waits++ < 200 ? 5 : 50))) continue;
      try {
        const header = this.wal.header();
        if (!header || !pinned) {
          // A read transaction pins the WAL only while its snapshot includes frames that are
          // not checkpointed yet; after a checkpoint (or with no WAL at all) it pins nothing.
          // So first a transaction that changes no byte — user_version set to its own value —
          // gives the WAL a fresh frame for the guard's snapshot to hold on to.
          const version = Number(this.writer!.pragma('user_version', { simple: true }));
          this.writer!.pragma(`user_version = ${version}`);
          this.writer!.exec('COMMIT');
          pinned = true;
          if (++pins > 20) throw new Error('the WAL never got a valid header');
          continue;
        }
        this.takeGuard();
        let position = startOf(header);
        const committed = this.wal.committedFrames(position);
        if (committed === null) {
          pinned = false;
          continue;
        }
        for (;;) {
          const next = this.wal.readAfter(position, 64 * 1024 * 1024, committed);
          if (next.position.frame === position.frame) break;
          position = next.position;
        }
        this.position = position;
        return;
      } finally {
        if (this.writer!.inTransaction) this.writer!.exec('ROLLBACK');
      }
    }
  }

  /** Our write lock: the application's writers wait (their busy timeout) for a few milliseconds. */
  private async barrier(retryMs: number): Promise<boolean> {
    try {
      this.writer!.exec('BEGIN IMMEDIATE');
      return true;
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
      await new Promise((resolve) => setTimeout(resolve, retryMs));
      return false;
    }
  }

  private databaseReplaced(): boolean {
    try {
      const stat = statSync(this.object.source);
      return !this.identity || stat.ino !== this.identity.ino || stat.dev !== this.identity.dev;
    } catch {
      return true;
    }
  }

  // --- tailing ---------------------------------------------------------------------------

  private startPolling(): void {
    if (this.stopped || this.pollTimer) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      try {
        if (this.poll() && this.phase === 'tailing') this.startPolling();
      } catch (error) {
        this.requestSync(`reading the database failed (${(error as Error).message})`);
      }
    }, this.pollMs);
  }

  private stopPolling(): void {
    if (this.pollTimer) clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  /** One look at the database; false when a resync took over. */
  private poll(): boolean {
    if (!this.peer.connected() || !this.shipped) return false;
    if (Date.now() - this.lastSnapshotAt > 1000) {
      this.lastSnapshotAt = Date.now();
      if (this.databaseReplaced()) {
        this.requestSync('the database file was replaced under its path');
        return false;
      }
    }
    if (this.capture === 'snapshot') return this.pollSnapshot();
    const header = this.wal.header();
    if (!sameGeneration(this.position!, header)) {
      this.requestSync(header ? 'the WAL was reset (checkpointed and restarted)' : 'the WAL went away');
      return false;
    }
    if (this.object.paused) return this.pollPaused();
    // While MaxInFlight shipped transactions wait for the backup's acknowledgement, what commits
    // stays in the WAL (like a backed-up link) and goes as one bigger transaction after the next
    // ack: under load batches grow to what the backup keeps up with — fewer commits (each an
    // fsync there), page hashes and messages per application transaction, and a page rewritten
    // by many transactions is read, hashed and sent once — while at a light load every poll
    // still ships at once.
    if (this.peer.backedUp() || this.waitingForAcks()) {
      this.countUnread();
      // The backup is slow: the guard keeps the frames in the WAL, which is our spill area —
      // up to a bound; past it the WAL may be reset and the backup gets a resync later.
      if (this.phase === 'tailing' && this.wal.hasFrameAhead(this.position!, this.framesBound())) {
        this.phase = 'behind';
        this.releaseGuard();
        void this.peer.drained().then(() => {
          if (this.phase === 'behind' && this.shipped) this.requestSync('the backup fell too far behind');
        });
        return false;
      }
      return true;
    }
    // Only frames SQLite has made visible (its WAL index): a commit frame is in the file
    // before its fsync returns, and if the application dies then, SQLite never committed it.
    const committed = this.wal.committedFrames(this.position!);
    if (committed === null) return true;
    if (committed < this.position!.frame) {
      this.requestSync('the WAL index went back before frames already sent');
      return false;
    }
    const { transactions, position } = this.wal.readAfter(this.position!, undefined, committed);
    this.position = position;
    // What a pause (or a slow backup) left unread goes in steps of readAfter's limit.
    if (position.frame >= committed) this.unread = null;
    else if (this.unread) this.unread.commits = Math.max(1, this.unread.commits - transactions.length);
    if (transactions.length > 0) this.ship(transactions);
    const bound = Math.max(CheckpointWalBytes, CheckpointWalShare * this.shipped!.pages * this.position!.pageSize);
    // Idle, we let the WAL be reset past the bound. A writer that never pauses would never give
    // us an idle poll, and our guard keeps SQLite from resetting the WAL: it grew without limit
    // (measured: 4.8 GiB in 45 s of back-to-back transactions). So a busy WAL is let go too, past
    // BusyCheckpointFactor times the bound, once everything committed has been read and shipped;
    // the reset costs a resync, which is rare next to filling the disk.
    const idle = transactions.length === 0;
    if (walLength(this.position!) > (idle ? bound : BusyCheckpointFactor * bound) && (idle || position.frame >= committed)) this.checkpoint();
    return true;
  }

  /**
   * Paused: nothing is read; the WAL holds the transactions (the guard keeps it from being reset)
   * and we only count them. Past MaxWalBytesBehind the guard lets go, so the application's WAL
   * can be checkpointed and reset, and the resume resyncs every page instead.
   */
  private pollPaused(): boolean {
    this.countUnread();
    if (this.phase === 'tailing' && this.wal.hasFrameAhead(this.position!, this.framesBound())) {
      this.phase = 'behind';
      this.releaseGuard();
      this.held = { reason: 'the pause outlasted the WAL the primary keeps for the backup', answer: undefined, since: Date.now() };
      return false;
    }
    return true;
  }

  /** Counts what was committed past our position and is not read yet (the capture stage). */
  private countUnread(): void {
    const committed = this.wal.committedFrames(this.position!);
    if (committed === null || committed <= this.position!.frame) return;
    const from = Math.max(this.unread?.frame ?? 0, this.position!.frame);
    if (committed <= from) return;
    const commits = (this.unread?.commits ?? 0) + this.wal.commitsBetween(this.position!, from, committed);
    this.unread = { since: this.unread?.since ?? Date.now(), frame: committed, commits };
  }

  /** How many WAL frames past our position a backup (or a pause) may hold in the WAL. */
  private framesBound(): number {
    return Math.ceil(MaxWalBytesBehind / (this.position!.pageSize + 24));
  }

  /** All transactions of one look go as one: the backup's copy moves from one committed state to a later one. */
  private ship(transactions: WalTransaction[]): void {
    const pages = new Map<number, Buffer>();
    for (const transaction of transactions) for (const [pgno, data] of transaction.pages) pages.set(pgno, data);
    const dbPages = transactions.at(-1)!.dbPages;
    const state = this.shipped!;
    state.truncate(dbPages);
    const kept: [number, Buffer][] = [];
    for (const [pgno, data] of pages) {
      if (pgno > dbPages) continue;
      state.set(pgno, data);
      kept.push([pgno, data]);
    }
    this.sendTransaction(kept, this.position!.pageSize, dbPages, state.checksum());
  }

  private sendTransaction(pages: [number, Buffer][], pageSize: number, dbPages: number, checksum: string): void {
    const txid = ++this.txid;
    const perPart = Math.max(1, Math.floor(PartBytes / pageSize));
    const parts = Math.max(1, Math.ceil(pages.length / perPart));
    for (let part = 0; part < parts; part++) {
      const last = part === parts - 1;
      this.peer.send(
        { t: 'sqlite.txn', epoch: this.peer.epoch(), objectId: this.id, txid, part, last, pageSize, dbPages, checksum: last ? checksum : null, snapshot: false, basis: 0, capture: this.capture },
        encodePages(pages.slice(part * perPart, (part + 1) * perPart), pageSize),
      );
    }
    this.unacked.set(txid, { at: Date.now(), bytes: pages.length * pageSize });
    this.persistTxid();
  }

  /** Whether to hold new commits back until an ack (see MaxInFlight and InFlightWaitMs). */
  private waitingForAcks(): boolean {
    if (this.unacked.size < MaxInFlight) return false;
    const oldest = this.unacked.values().next().value!.at;
    return Date.now() - oldest < InFlightWaitMs;
  }

  private txidPersistedAt = 0;
  private ackedPersistedAt = 0;

  /**
   * The acknowledged txid only seeds the status after a restart (the backup's hashes then say
   * what it has), so, like persistTxid, it is written at most every 200 ms and at stop(): at
   * saturation the backup acknowledges hundreds of times a second, each write an fsync.
   */
  private persistAcked(): void {
    if (Date.now() - this.ackedPersistedAt < 200) return;
    this.ackedPersistedAt = Date.now();
    this.store.setAcked(this.id, this.ackedTxid);
  }

  /** Transaction ids survive a restart; written at most every 200 ms (each write is an fsync of the node's store). */
  private persistTxid(): void {
    if (Date.now() - this.txidPersistedAt < 200) return;
    this.txidPersistedAt = Date.now();
    this.store.setLastSeq(this.id, this.txid);
  }

  /**
   * Lets the WAL be checkpointed (and then reset by the next writer): the guard lets go for
   * a PASSIVE checkpoint and is taken again. The reset that follows is not ours to explain
   * away, so it leads to a resync — rare (every CheckpointWalBytes of WAL) and cheap next to
   * a WAL that grows without bound.
   */
  private checkpoint(): void {
    this.releaseGuard();
    try {
      this.writer!.pragma('wal_checkpoint(PASSIVE)');
    } finally {
      this.takeGuard();
    }
  }

  /** A rollback-journal database: a new snapshot whenever its change counter moves (at most every SnapshotEveryMs). */
  private pollSnapshot(): boolean {
    const counter = readChangeCounter(this.object.source);
    if (this.changeCounter && counter.equals(this.changeCounter)) return true;
    if (this.object.paused) {
      // The database itself holds the changes: one snapshot at the resume sends them all.
      this.unread ??= { since: Date.now(), frame: 0, commits: 1 };
      return true;
    }
    if (Date.now() - this.lastChangeSnapshot < SnapshotEveryMs) return true;
    this.lastChangeSnapshot = Date.now();
    try {
      this.snapshotChanges();
    } catch (error) {
      // The application is writing: look again next time.
      if ((error as { code?: string }).code !== 'SQLITE_BUSY') throw error;
    }
    return true;
  }

  private lastChangeSnapshot = 0;

  private snapshotChanges(): void {
    const guard = this.guard!;
    guard.exec('BEGIN');
    try {
      guard.prepare('SELECT count(*) FROM sqlite_master').pluck().get();
      // Read inside the read transaction: the counter and the pages are one committed state.
      const counter = readChangeCounter(this.object.source);
      const pageSize = Number(guard.pragma('page_size', { simple: true }));
      const pageCount = Number(guard.pragma('page_count', { simple: true }));
      const state = this.shipped!;
      state.truncate(pageCount);
      const changed: [number, Buffer][] = [];
      for (const row of guard.prepare('SELECT pgno, data FROM sqlite_dbpage').iterate() as Iterable<{ pgno: number; data: Buffer }>) {
        if (state.set(row.pgno, row.data)) changed.push([row.pgno, row.data]);
      }
      this.changeCounter = counter;
      this.unread = null;
      if (changed.length > 0 || pageCount !== state.pages) this.sendTransaction(changed, pageSize, pageCount, state.checksum());
    } finally {
      if (guard.inTransaction) guard.exec('COMMIT');
    }
  }
}

/** Bytes of the current WAL generation up to a position (SQLite never shrinks the file itself). */
function walLength(position: WalPosition): number {
  return 32 + position.frame * (24 + position.pageSize);
}

/** A resync asked for while paused: held until the resume. */
class Held extends Error {}

/** A failure already reported (openDatabase did): retried without a second event. */
class Reported extends Error {}

class LinkLost extends Error {
  constructor() {
    super('the link to the backup was lost');
  }
}

function checkIsSqlite(path: string): void {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(16);
    const read = readSync(fd, head, 0, 16, 0);
    // An empty file is a database SQLite has not written yet; anything else must say so.
    if (read > 0 && !head.subarray(0, read).equals(SqliteMagic.subarray(0, read))) {
      throw Object.assign(new Error('not a SQLite database'), { code: 'SQLITE_NOTADB' });
    }
  } finally {
    closeSync(fd);
  }
}

/** The rollback-journal change counter (header bytes 24..27), bumped by every commit. */
function readChangeCounter(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const bytes = Buffer.alloc(4);
    readSync(fd, bytes, 0, 4, 24);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** One line an admin can act on. */
export function describeOpenError(path: string, error: unknown): string {
  const code = (error as { code?: string }).code;
  switch (code) {
    case 'ENOENT':
      return `${path} does not exist`;
    case 'EACCES':
    case 'EPERM':
      return `${path} cannot be read (permission denied)`;
    case 'SQLITE_NOTADB':
      return `${path} is not a SQLite database (or it is encrypted)`;
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return `${path} is locked by another process (exclusive locking mode?)`;
    default:
      return `${path} cannot be read: ${(error as Error).message}`;
  }
}
