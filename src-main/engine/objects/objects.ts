/**
 * The protected objects of a node: the sources it replicates as primary and the replicas
 * it keeps as backup. Creates them, routes replication messages to them, and reports them.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, lstatSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { UnderstudyError } from '../errors.js';
import type { AuditOutcome, LagSample, LastAudit, NodeRole } from '../../contract/control.js';
import type { ObjectReporter, ObjectStatus, PeerChannel, ReplicationMessage } from './folder/channel.js';
import { Hasher } from './folder/hasher.js';
import { FolderReplica } from './folder/replica.js';
import { FolderSource, type SourceOptions } from './folder/source.js';
import { resolveInside } from './folder/paths.js';
import { VersionsArea } from './folder/versions.js';
import { archiveDivergence, type ArchivedObject } from './divergence.js';
import { newObject, ObjectStore, type ObjectKind, type ObjectRecord } from './object-store.js';
import { SqliteReplica } from './sqlite/replica.js';
import { SqliteSource } from './sqlite/source.js';
import { digestIndex } from './folder/index-digest.js';
import { snapshotCopies, type SnapshotObject } from './snapshot.js';
import { LagHistories } from './lag-history.js';
import type Database from 'better-sqlite3';

/** What the node needs of any protected object, on either side. */
interface ProtectedObject {
  readonly id: string;
  stop(): Promise<void>;
  linkChanged(connected: boolean): void;
  onMessage(message: ReplicationMessage, body: Buffer): void;
  status(): ObjectStatus;
}

/** A primary's object. */
interface ObjectSource extends ProtectedObject {
  /** Captures whatever changed up to now (a switchover drains after it). */
  flush(): Promise<void>;
  /** Stops (true) or resumes sending changes; capture goes on. Recorded in the store. */
  setPaused(paused: boolean): void;
}

/** A backup's copy. */
interface ObjectReplica extends ProtectedObject {
  announced(source: string): void;
  /** Audits the copy against the primary and repairs it; never throws. */
  audit(options: { scrub: boolean }): Promise<AuditOutcome>;
}

export interface ObjectsOptions {
  home: string;
  db: Database.Database;
  peer: PeerChannel;
  log: Logger;
  event: ObjectReporter['event'];
  source?: SourceOptions;
}

export class ProtectedObjects {
  private readonly store: ObjectStore;
  private readonly hasher = new Hasher();
  private readonly sources = new Map<string, ObjectSource>();
  private readonly replicas = new Map<string, ObjectReplica>();
  private readonly versionsRoot: string;
  /** Set while reverse() runs: replication messages wait for it. */
  private reversing: Promise<void> | null = null;
  /** On the primary: the backup's latest audit of each object, as it reported them. */
  private readonly reportedAudits = new Map<string, LastAudit>();
  /** On the primary: audits the admin started here, run on the backup, by request id. */
  private readonly auditRequests = new Map<number, (result: { outcomes: AuditOutcome[]; error: string | null }) => void>();
  private nextAuditRequest = 1;
  private readonly rootAnswers = new Map<number, (value: { seq: number; root: string }) => void>();
  /** Each object's lag over the last hour (object:history). */
  private readonly histories = new LagHistories();
  /** Objects with a resync running (one at a time each). */
  private readonly resyncing = new Set<string>();

  constructor(private readonly options: ObjectsOptions) {
    this.store = new ObjectStore(options.db);
    this.versionsRoot = join(options.home, 'versions');
  }

  private reporter(): ObjectReporter {
    return { log: this.options.log, event: this.options.event };
  }

  /** Starts every object recorded in the store. */
  async start(): Promise<void> {
    for (const object of this.store.listObjects()) await this.open(object);
    this.histories.start(
      () => this.status(),
      () => new Set(this.store.listObjects().map((o) => o.id)),
    );
  }

  async stop(): Promise<void> {
    this.histories.stop();
    for (const source of this.sources.values()) await source.stop();
    for (const replica of this.replicas.values()) await replica.stop();
    await this.hasher.close();
  }

  private async open(object: ObjectRecord): Promise<void> {
    const versions = new VersionsArea(join(this.versionsRoot, object.id));
    if (object.side === 'source') {
      let source: ObjectSource;
      if (object.kind === 'sqlite') {
        const database = new SqliteSource(object, this.store, this.options.peer, this.reporter());
        database.start();
        source = database;
      } else {
        const folder = new FolderSource(object, this.store, this.hasher, this.options.peer, this.reporter(), this.options.source);
        await folder.start();
        source = folder;
      }
      this.sources.set(object.id, source);
      if (this.options.peer.connected()) source.linkChanged(true);
    } else {
      const replica =
        object.kind === 'sqlite'
          ? new SqliteReplica(object, this.store, this.options.peer, this.reporter(), versions, this.options.source?.rescanMs)
          : new FolderReplica(object, this.store, this.hasher, this.options.peer, this.reporter(), versions, this.options.source?.rescanMs);
      this.replicas.set(object.id, replica);
      await replica.start();
    }
  }

  /** `understudy protect sqlite`: on the primary (or a node not paired yet). */
  async protectDatabase(role: NodeRole, sourcePath: string, targetPath: string | undefined): Promise<ObjectStatus> {
    if (role === 'backup' || role === 'witness') {
      throw new UnderstudyError('usage', `this node is the ${role}`, { hint: 'run protect on the primary' });
    }
    const source = resolve(sourcePath);
    if (!existsSync(source) || !statSync(source).isFile()) {
      throw new UnderstudyError('usage', `${source} is not a database file`, { hint: 'give the path of an existing SQLite database' });
    }
    const problem = sqliteProblem(source);
    if (problem) throw new UnderstudyError('usage', problem, { hint: 'give the path of a SQLite database file (not its -wal or -shm)' });
    const target = targetPath ? resolve(targetPath) : source;
    // Compared as real paths: a symlink or another spelling of a protected database is the same database.
    const real = realPath(source);
    for (const existing of this.store.listObjects()) {
      const existingReal = realPath(existing.source);
      if (existing.side === 'source' && (existingReal === real || (existing.kind === 'folder' && inside(real, existingReal)))) {
        throw new UnderstudyError('usage', `${source} is already protected (${existing.id}${existing.kind === 'folder' ? `, inside ${existing.source}` : ''})`, {
          hint: 'protect each database once',
        });
      }
    }
    const object = newObject('sqlite', { id: `d-${randomBytes(5).toString('hex')}`, side: 'source', source, target, excludes: [] });
    this.store.addObject(object);
    this.options.event('sqlite.protected', `protecting the database ${source} (to ${target} on the backup) as ${object.id}`, { object: object.id, source, target });
    await this.open(object);
    return this.sources.get(object.id)!.status();
  }

  /** `understudy protect folder`: on the primary (or a node not paired yet). */
  async protectFolder(role: NodeRole, sourcePath: string, targetPath: string | undefined, excludes: string[]): Promise<ObjectStatus> {
    if (role === 'backup' || role === 'witness') {
      throw new UnderstudyError('usage', `this node is the ${role}`, { hint: 'run protect on the primary' });
    }
    const source = resolve(sourcePath);
    if (!existsSync(source) || !statSync(source).isDirectory()) {
      throw new UnderstudyError('usage', `${source} is not a folder`, { hint: 'give an existing folder to protect' });
    }
    const target = targetPath ? resolve(targetPath) : source;
    for (const existing of this.store.listObjects()) {
      if (existing.side === 'source' && (inside(source, existing.source) || inside(existing.source, source))) {
        throw new UnderstudyError('usage', `${source} overlaps ${existing.source}, which is already protected (${existing.id})`, {
          hint: 'protect each folder once',
        });
      }
    }
    const object = newObject('folder', { id: `f-${randomBytes(5).toString('hex')}`, side: 'source', source, target, excludes });
    this.store.addObject(object);
    this.options.event('folder.protected', `protecting ${source} (to ${target} on the backup) as ${object.id}`, { object: object.id, source, target });
    await this.open(object);
    return this.sources.get(object.id)!.status();
  }

  /** Stops protecting an object; the backup's copy stays where it is. */
  async unprotect(id: string): Promise<void> {
    const source = this.sources.get(id);
    const replica = this.replicas.get(id);
    if (!source && !replica) throw new UnderstudyError('usage', `no protected object '${id}'`, { hint: "see 'understudy status' for the ids" });
    if (replica) throw new UnderstudyError('usage', `'${id}' is replicated from the primary`, { hint: 'run unprotect on the primary' });
    const object = this.store.getObject(id)!;
    await source!.stop();
    this.sources.delete(id);
    this.store.removeObject(id);
    this.options.peer.send({ t: 'folder.object', epoch: this.options.peer.epoch(), position: { epoch: this.options.peer.epoch(), seq: 0 }, objectId: id, source: object.source, target: object.target, removed: true, kind: object.kind });
    this.options.event(object.kind === 'sqlite' ? 'sqlite.unprotected' : 'folder.unprotected', `stopped protecting ${object.source}; the backup's copy is left in place`, { object: id });
  }

  /**
   * `understudy pause` / `resume`, on the primary (the backup's copy follows the primary, so
   * the backup refuses and says where to run it). Idempotent: pausing a paused object changes
   * nothing and records no event.
   */
  setPaused(id: string, paused: boolean): ObjectStatus {
    const source = this.sourceFor(id, paused ? 'pause' : 'resume');
    if (this.store.getObject(id)!.paused !== paused) {
      // Counted before the resume: a database's held resync stops counting once it starts.
      const held = source.status();
      source.setPaused(paused);
      if (paused) this.options.event('object.paused', `${id} (${held.source}) is paused: its changes are captured but not sent to the backup until 'understudy resume ${id}'`, { object: id });
      else this.options.event('object.resumed', `${id} (${held.source}) is resumed: sending the ${held.pending} change(s) held back`, { object: id, pending: held.pending });
    }
    return source.status();
  }

  /**
   * `understudy resync`, on the primary: compares the whole object with the backup's copy and
   * sends what differs, the backup keeping its versions of what is overwritten. A folder is
   * rescanned, then audited by the backup with a full scrub; a database's copy is hashed page by
   * page and every differing page sent. Returns once started (the status says catching-up);
   * `object.resync` records what it found when it is done.
   */
  resync(role: NodeRole, id: string): ObjectStatus {
    const source = this.sourceFor(id, 'resync');
    if (role !== 'primary') throw new UnderstudyError('usage', 'this node is not paired: there is no backup copy to resync', { hint: 'pair a backup first' });
    if (this.store.getObject(id)!.paused) throw new UnderstudyError('usage', `${id} is paused`, { hint: `resume it first ('understudy resume ${id}')` });
    if (this.resyncing.has(id)) throw new UnderstudyError('usage', `a resync of ${id} is already running`, { hint: "wait for its 'object.resync' event" });
    if (!this.options.peer.connected()) throw new UnderstudyError('usage', 'the backup is not connected', { hint: 'check that both nodes are up (understudy status), then resync again' });
    const started = performance.now();
    this.resyncing.add(id);
    const run: Promise<{ differences: number; repaired: number; failed: string | null }> =
      source instanceof SqliteSource
        ? source.resync().then(({ pages, matched }) => ({ differences: pages, repaired: pages, failed: matched ? null : 'the copy still did not match the primary afterwards (a resync follows by itself)' }))
        : (source as FolderSource).resync(() => this.audit(role, id, true)).then(([outcome]) => ({
            differences: outcome?.differences ?? 0,
            repaired: outcome?.repaired ?? 0,
            failed: outcome?.result === 'failed' ? (outcome.detail ?? 'the audit could not complete') : null,
          }));
    void run
      .catch((error: unknown) => ({ differences: 0, repaired: 0, failed: (error as Error).message }))
      .then(({ differences, repaired, failed }) => {
        this.resyncing.delete(id);
        const ms = Math.round(performance.now() - started);
        const what = source instanceof SqliteSource ? 'page(s)' : 'path(s)';
        const found = failed ? `failed: ${failed}` : differences === 0 ? 'the copy matched' : `${differences} ${what} differed and were sent (the backup kept its versions)`;
        this.options.event('object.resync', `resync of ${id}: ${found} (${ms} ms)`, { object: id, result: failed ? 'failed' : differences === 0 ? 'clean' : 'repaired', differences, repaired, ms });
      });
    return source.status();
  }

  /** `understudy history`: an object's lag samples over the last hour, oldest first. */
  history(id: string): { id: string; intervalMs: number; samples: LagSample[] } {
    if (!this.store.getObject(id)) throw new UnderstudyError('usage', `no protected object '${id}'`, { hint: "see 'understudy status' for the ids" });
    return { id, intervalMs: this.histories.intervalMs, samples: this.histories.samples(id) };
  }

  /** This node's source of `id`, for a command only the primary runs; one clear line otherwise. */
  private sourceFor(id: string, verb: string): ObjectSource {
    const source = this.sources.get(id);
    if (source) return source;
    if (this.replicas.has(id)) throw new UnderstudyError('usage', `'${id}' is replicated from the primary: its copy here follows the primary`, { hint: `run ${verb} on the primary` });
    throw new UnderstudyError('usage', `no protected object '${id}'`, { hint: "see 'understudy status' for the ids" });
  }

  /**
   * A switchover's drain: captures what changed up to now and waits until the backup has
   * applied and acknowledged all of it. Resolves with the objects still behind (empty: drained).
   */
  async drain(timeoutMs: number): Promise<string[]> {
    await Promise.all([...this.sources.values()].map((source) => source.flush()));
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const behind = [...this.sources.values()].map((source) => source.status()).filter((status) => status.state !== 'in-sync' || status.pending > 0);
      if (behind.length === 0 || performance.now() >= deadline) return behind.map((status) => `${status.id} (${status.state}, ${status.pending} pending)`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /**
   * At a switchover's drain point: each folder's index digest on the backup against ours, at
   * the same position (a fast check in place of a full audit; databases were checked by the
   * state checksum of every transaction). Resolves with what does not match (empty: all do).
   */
  async compareAtDrainPoint(timeoutMs: number): Promise<string[]> {
    const folders = this.store.listObjects().filter((o) => o.side === 'source' && o.kind === 'folder');
    const checks = folders.map(async (object) => {
      const reqId = this.nextAuditRequest++;
      const answer = new Promise<{ seq: number; root: string } | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), timeoutMs);
        this.rootAnswers.set(reqId, (value) => {
          clearTimeout(timer);
          resolve(value);
        });
      });
      this.options.peer.send({ t: 'audit.root-request', epoch: this.options.peer.epoch(), objectId: object.id, reqId });
      const ours = digestIndex(this.store.entries(object.id).values()).root;
      const seq = this.store.getObject(object.id)?.lastSeq ?? 0;
      const theirs = await answer;
      this.rootAnswers.delete(reqId);
      if (!theirs) return `${object.id}: the backup did not send its index digest`;
      if (theirs.seq !== seq) return `${object.id}: the backup is at position ${theirs.seq}, the primary at ${seq}`;
      return theirs.root === ours ? null : `${object.id}: the backup's index differs from the primary's (run 'understudy audit ${object.id}')`;
    });
    return (await Promise.all(checks)).filter((problem): problem is string => problem !== null);
  }

  /** A snapshot of this backup's copies in dir (see snapshot.ts). */
  snapshotCopies(dir: string): Promise<SnapshotObject[]> {
    return snapshotCopies(dir, this.store.listObjects().filter((o) => o.side === 'replica'));
  }

  /** Keeps what this node's sources hold beyond the backup's acknowledgement (see divergence.ts). */
  async archiveDivergence(dir: string): Promise<ArchivedObject[]> {
    for (const source of this.sources.values()) await source.flush();
    const sources = this.store.listObjects().filter((object) => object.side === 'source');
    return archiveDivergence(dir, sources, this.store);
  }

  /**
   * The roles swapped: every object reopens on its other side — this node's copies become
   * the sources when it is primary, and the other way round.
   */
  async reverse(role: 'primary' | 'backup', options: { setAsideUnacknowledged?: boolean } = {}): Promise<void> {
    // The data link may come up while we reverse (the peer sees our new role at once): what it
    // sends waits until every object is open on its new side.
    let done!: () => void;
    this.reversing = new Promise<void>((resolve) => (done = resolve));
    try {
      await this.reverseNow(role, options);
    } finally {
      this.reversing = null;
      done();
    }
  }

  private async reverseNow(role: 'primary' | 'backup', options: { setAsideUnacknowledged?: boolean }): Promise<void> {
    const side = role === 'primary' ? 'source' : 'replica';
    for (const source of this.sources.values()) await source.stop();
    for (const replica of this.replicas.values()) await replica.stop();
    this.sources.clear();
    this.replicas.clear();
    if (options.setAsideUnacknowledged) await this.setAsideUnacknowledged();
    for (const object of this.store.listObjects()) {
      if (object.side !== side) this.store.reverse(object.id);
      await this.open(this.store.getObject(object.id)!);
    }
  }

  /**
   * A primary deposed by a later one, once it archived its divergence (archiveDivergence) and
   * stopped its sources: each folder's changes the backup never acknowledged leave the live
   * copy for the versions area, and the folder starts over from position 0, so that the new
   * primary lists its whole index and the copy ends up exactly like the new primary's (a path
   * changed here and not there gets the new primary's version back). Databases need nothing:
   * a replica compares every page with the new primary's when it connects.
   */
  private async setAsideUnacknowledged(): Promise<void> {
    for (const object of this.store.listObjects()) {
      if (object.side !== 'source' || object.kind !== 'folder') continue;
      const changes = this.store.changedAfter(object.id, object.ackedSeq).filter((change) => !change.deleted);
      if (changes.length === 0 && object.lastSeq === object.ackedSeq) continue;
      const versions = new VersionsArea(join(this.versionsRoot, object.id));
      // Deepest first: a directory goes aside after what it holds.
      changes.sort((a, b) => b.path.split('/').length - a.path.split('/').length);
      for (const change of changes) {
        let abs: string;
        try {
          abs = resolveInside(object.source, change.path);
        } catch {
          continue;
        }
        if (lstatSync(abs, { throwIfNoEntry: false })) await versions.moveAside(abs, change.path);
      }
      this.store.forgetAfter(object.id, object.ackedSeq);
      this.options.log.info({ object: object.id, setAside: changes.length, ackedSeq: object.ackedSeq }, 'unacknowledged changes set aside; the folder starts over from the new primary');
    }
  }

  status(): ObjectStatus[] {
    const sources = [...this.sources.values()].map((o) => ({ ...o.status(), lastAudit: this.reportedAudits.get(o.id) ?? null }));
    return [...sources, ...[...this.replicas.values()].map((o) => o.status())];
  }

  /**
   * `understudy audit`: on the backup, audits its copies here; on the primary, asks the backup to
   * and waits for what it found. Throws (one clear line) only when no audit could start.
   */
  async audit(role: NodeRole, id: string | undefined, scrub: boolean): Promise<AuditOutcome[]> {
    const known = this.store.listObjects();
    if (id !== undefined && !known.some((o) => o.id === id)) throw new UnderstudyError('usage', `no protected object '${id}'`, { hint: "see 'understudy status' for the ids" });
    if (known.length === 0) throw new UnderstudyError('usage', 'nothing is protected yet: there is nothing to audit', { hint: 'protect a folder or a database first' });
    if (role === 'backup') return this.auditCopies(id ?? null, scrub);
    if (role !== 'primary') throw new UnderstudyError('usage', `this node is ${role === 'witness' ? 'the witness' : 'not paired'}: audits compare the primary and its backup`, { hint: 'run audit on the primary or the backup' });
    const reqId = this.nextAuditRequest++;
    const answer = new Promise<{ outcomes: AuditOutcome[]; error: string | null }>((resolve) => this.auditRequests.set(reqId, resolve));
    if (!this.options.peer.connected() || !this.options.peer.send({ t: 'audit.run', epoch: this.options.peer.epoch(), reqId, objectId: id ?? null, scrub })) {
      this.auditRequests.delete(reqId);
      throw new UnderstudyError('audit-failed', 'the audit could not start: the backup is not connected', { hint: 'check that both nodes are up (understudy status), then audit again' });
    }
    const result = await answer;
    if (result.error) throw new UnderstudyError('audit-failed', `the backup could not audit: ${result.error}`, { hint: 'see the events on the backup' });
    return result.outcomes;
  }

  private async auditCopies(id: string | null, scrub: boolean): Promise<AuditOutcome[]> {
    const outcomes: AuditOutcome[] = [];
    for (const replica of this.replicas.values()) if (id === null || replica.id === id) outcomes.push(await replica.audit({ scrub }));
    return outcomes;
  }

  linkChanged(connected: boolean): void {
    // Audits run on the backup answer over the link: without it, they never will.
    if (!connected) {
      for (const answer of this.auditRequests.values()) answer({ outcomes: [], error: 'the link to the backup was lost' });
      this.auditRequests.clear();
    }
    for (const source of this.sources.values()) source.linkChanged(connected);
    for (const replica of this.replicas.values()) replica.linkChanged(connected);
  }

  onMessage(message: ReplicationMessage, body: Buffer): void {
    if (this.reversing) {
      void this.reversing.then(() => this.onMessage(message, body));
      return;
    }
    if (message.t === 'folder.object') {
      void this.onAnnounce(message);
      return;
    }
    if (message.t === 'audit.run') {
      void this.auditCopies(message.objectId, message.scrub).then(
        (outcomes) => this.options.peer.send({ t: 'audit.result', epoch: this.options.peer.epoch(), reqId: message.reqId, outcomes, error: null }),
        (error: unknown) => this.options.peer.send({ t: 'audit.result', epoch: this.options.peer.epoch(), reqId: message.reqId, outcomes: [], error: String(error).slice(0, 500) }),
      );
      return;
    }
    if (message.t === 'audit.result') {
      this.auditRequests.get(message.reqId)?.({ outcomes: message.outcomes, error: message.error });
      this.auditRequests.delete(message.reqId);
      return;
    }
    if (message.t === 'audit.root') {
      this.rootAnswers.get(message.reqId)?.({ seq: message.seq, root: message.root });
      return;
    }
    if (message.t === 'audit.report') {
      if (this.sources.has(message.objectId)) this.reportedAudits.set(message.objectId, message.audit);
      return;
    }
    if (message.t === 'folder.block' || message.t === 'folder.fetched' || message.t === 'folder.files' || message.t === 'folder.group-hashes') {
      for (const replica of this.replicas.values()) if (replica instanceof FolderReplica) replica.onMessage(message, body);
      return;
    }
    const id = (message as { objectId: string }).objectId;
    this.sources.get(id)?.onMessage(message, body);
    this.replicas.get(id)?.onMessage(message, body);
  }

  private async onAnnounce(message: Extract<ReplicationMessage, { t: 'folder.object' }>): Promise<void> {
    const existing = this.replicas.get(message.objectId);
    if (message.removed) {
      if (!existing) return;
      await existing.stop();
      this.replicas.delete(message.objectId);
      this.store.removeObject(message.objectId);
      this.options.event('folder.unprotected', `the primary stopped protecting ${message.source}; the copy in ${message.target} is left in place`, { object: message.objectId });
      return;
    }
    if (this.sources.has(message.objectId)) return;
    if (!existing) {
      const object = newObject(message.kind, { id: message.objectId, side: 'replica', source: message.source, target: message.target, excludes: [] });
      this.store.addObject(object);
      const what: ObjectKind = message.kind;
      this.options.event(what === 'sqlite' ? 'sqlite.replicating' : 'folder.replicating', `replicating ${what === 'sqlite' ? 'the database ' : ''}${message.source} from the primary into ${message.target}`, { object: object.id });
      await this.open(object);
    }
    this.replicas.get(message.objectId)!.announced(message.source);
  }
}

/** Why a file cannot be protected as a database, or null when it looks like one. */
function sqliteProblem(path: string): string | null {
  if (/-(wal|shm|journal)$/.test(path)) return `${path} is a SQLite side file, not the database`;
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(16);
    const read = readSync(fd, head, 0, 16, 0);
    if (read > 0 && head.subarray(0, read).toString('latin1') !== 'SQLite format 3\0'.slice(0, read)) return `${path} is not a SQLite database (or it is encrypted)`;
    return null;
  } finally {
    closeSync(fd);
  }
}

function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function inside(path: string, root: string): boolean {
  return path === root || path.startsWith(`${root}/`);
}
