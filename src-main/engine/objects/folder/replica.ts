/**
 * The backup's side of a protected folder: applies the primary's changes strictly in seq
 * order (fetching file contents ahead, concurrently, into temp files), atomically (temp file,
 * fsync, rename, fsync of the directory), never outside DEST and never through a symlink,
 * keeping every deleted or overwritten version; then records and acknowledges what it applied.
 */
import { closeSync, fsyncSync, lstatSync, openSync, renameSync } from 'node:fs';
import { chmod, chown, lchown, mkdir, readdir, symlink, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { FolderEntry, ObjectRecord, ObjectStore } from '../object-store.js';
import { Assembly, AssemblyError, type Assembled } from './assembly.js';
import type { ObjectReporter, ObjectStatus, PeerChannel, ReplicationMessage } from './channel.js';
import { reportedProgress, reportedStatus, type ReportedProgress } from '../reported-progress.js';
import type { AuditOutcome, LastAudit } from '../../../contract/control.js';
import { bucketOf, digestIndex, liveEntries, sameEntry } from './index-digest.js';
import { differingBlocks, GroupBlocks, GroupedAboveBlocks, groupHashes } from './block-groups.js';
import { BlockHashBytes } from './hash-worker.js';
import type { Hasher } from './hasher.js';
import { ensureParents, resolveInside, UnsafePathError } from './paths.js';
import { excludeFilter, scanFolder, TempPrefix } from './scanner.js';
import type { VersionsArea } from './versions.js';
import { MaxFilesPerFetch } from '../../link/messages.js';

/**
 * How often the continuous audit starts. 45 s rather than the 60 s the issue allows: a change
 * made just after an audit's scan passed its file is found by the next one, and reported when
 * that one ends — within 60 s for trees an audit covers in under 15 s (100,000 files: about 6 s).
 */
export const DefaultAuditMs = 45_000;

/** How much file content one continuous audit re-reads and re-hashes (the scrub goes round the copy slice by slice). @default 64 MiB */
const ScrubSliceBytes = Number(process.env.UNDERSTUDY_SCRUB_SLICE_BYTES) > 0 ? Number(process.env.UNDERSTUDY_SCRUB_SLICE_BYTES) : 64 * 1024 * 1024;

type DigestReply = { seq: number; root: string; buckets: string[] | null };
type EntriesReply = { seq: number; entries: FolderEntry[] };

/** Block size for deltas: small enough that a 4 KiB edit costs little. */
export const BlockSize = 16 * 1024;
/** File contents fetched ahead of the entry being applied. */
const FetchAhead = 128;
/** Entries applied before their seq is recorded and acknowledged. */
const BatchEntries = 1024;
const UnstableRetries = 30;
/** Fetch ids are unique across all replicas of the node: block messages carry no object id. */
let nextReqId = 1;

type Prepared = { kind: 'ready'; assembled: Assembled; localHash: string | null } | { kind: 'skip'; reason: string };

export class FolderReplica {
  private queue: FolderEntry[] = [];
  private receivedSeq: number;
  private running = false;
  private readonly fetches = new Map<number, Assembly>();
  private reported: ReportedProgress | null = null;
  private connected = false;
  private generation = 0;
  private error: string | null = null;
  private readonly isRoot = process.getuid?.() === 0;
  private verifyTimer: NodeJS.Timeout | null = null;
  private auditing = false;
  private latestAudit: LastAudit | null = null;
  private auditQueue: Promise<unknown> = Promise.resolve();
  /** Where the continuous scrub goes on from: the last path of its previous slice. */
  private scrubCursor = '';
  /** Audit requests to the primary awaiting their answers, by request id. */
  private readonly answers = new Map<number, { parts: FolderEntry[]; resolve: (value: unknown) => void }>();
  /** Counts applied batches, so a verification can tell whether the copy changed under it. */
  private appliedBatches = 0;
  private pruneTimer: NodeJS.Timeout | null = null;
  /**
   * Directories of DEST checked (or created) as real directories during the current batch, so
   * that ten thousand files in a hundred folders cost a hundred checks, not thirty thousand.
   * Forgotten whenever an entry could remove or replace a directory.
   */
  private knownDirs = new Set<string>();
  /** Grouped fetches waiting for the primary's folder.group-hashes, by request id. */
  private readonly grouped = new Map<number, { path: string; seq: number; have: Buffer }>();
  /** Whole-file fetches waiting to go out together in one folder.fetch-files request. */
  private wholeFiles: { reqId: number; path: string; seq: number }[] = [];
  private wholeFilesTimer: NodeJS.Timeout | null = null;

  constructor(
    private object: ObjectRecord,
    private readonly store: ObjectStore,
    private readonly hasher: Hasher,
    private readonly peer: PeerChannel,
    private readonly report: ObjectReporter,
    private readonly versions: VersionsArea,
    private readonly rescanMs = DefaultAuditMs,
  ) {
    this.receivedSeq = object.lastSeq;
  }

  get id(): string {
    return this.object.id;
  }

  /** Prepares DEST: creates it if needed and removes temp files a crash left behind. */
  async start(): Promise<void> {
    await mkdir(this.object.target, { recursive: true, mode: 0o755 });
    await sweepTemps(this.object.target);
    void this.versions.prune().catch(() => undefined);
    this.verifyTimer = setInterval(() => void this.verify(), this.rescanMs);
    this.pruneTimer = setInterval(() => void this.versions.prune().catch(() => undefined), 3600_000);
  }

  async stop(): Promise<void> {
    if (this.verifyTimer) clearInterval(this.verifyTimer);
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.linkChanged(false);
  }

  /** The continuous audit (every rescanMs, @default DefaultAuditMs): the index and the files' metadata, and a slice of the content scrub. */
  async verify(): Promise<void> {
    // Paused on the primary, the copy is behind on purpose: the primary's index moves on without it.
    if (this.running || this.queue.length > 0 || !this.connected || this.auditing || this.reported?.paused) return;
    await this.audit({ scrub: 'slice' });
  }

  lastAudit(): LastAudit | null {
    return this.latestAudit;
  }

  /**
   * Audits the copy against the primary (see folder/audit.md in the docs): the index's Merkle
   * root against the primary's at the same position (on a mismatch, only the differing buckets'
   * entries travel), then every file on disk against the index (type, size, mode, mtime), and
   * with `scrub` every file's content re-hashed ('slice': the next ScrubSliceBytes of it).
   * Whatever differs is put back to the primary's version: only differing blocks are fetched,
   * and a local version that differs is kept in the versions area first. Never throws.
   */
  audit(options: { scrub: boolean | 'slice' }): Promise<AuditOutcome> {
    // One audit at a time: one asked for while another runs waits for it, then looks again.
    const next = this.auditQueue.then(() => this.auditNow(options));
    this.auditQueue = next.catch(() => undefined);
    return next;
  }

  private async auditNow(options: { scrub: boolean | 'slice' }): Promise<AuditOutcome> {
    const started = performance.now();
    const scope = `index+metadata${options.scrub === true ? '+content' : options.scrub === 'slice' ? '+content slice' : ''}`;
    const outcome = (result: LastAudit['result'], differences: number, repaired: number, detail: string | null): AuditOutcome => {
      const audit: AuditOutcome = { id: this.id, kind: 'folder', at: new Date().toISOString(), result, differences, repaired, scope, ms: Math.round(performance.now() - started), detail };
      this.latestAudit = { at: audit.at, result, differences, repaired, scope, ms: audit.ms, detail };
      this.peer.send({ t: 'audit.report', epoch: this.peer.epoch(), objectId: this.id, audit: this.latestAudit });
      if (differences > 0) {
        const what = `${differences} difference(s) in the copy ${this.object.target}${detail ? ` (${detail})` : ''}`;
        if (result === 'repaired') this.report.event('audit.repaired', `${what}: put back to the primary's version; local versions kept in the versions area`, { object: this.id, differences, repaired, scope });
        else this.report.event('audit.failed', `${what}: ${repaired} repaired, the rest could not be`, { object: this.id, differences, repaired, scope });
      }
      return audit;
    };
    // Set for the continuous audit's timer (it skips a turn); audits themselves queue in audit().
    this.auditing = true;
    try {
      if (this.reported?.paused) return outcome('failed', 0, 0, `${this.id} is paused on the primary, so its copy is behind on purpose: resume it ('understudy resume ${this.id}'), then audit`);
      if (!(await this.waitIdle(30_000))) return outcome('failed', 0, 0, this.connected ? 'the copy stayed busy applying changes for 30 s' : 'the primary is not connected');
      const fromIndex = await this.auditIndex();
      if (typeof fromIndex === 'string') return outcome('failed', 0, 0, fromIndex);
      const fromDisk = await this.auditDisk(options.scrub);
      const differences = fromIndex.differences + fromDisk.differences;
      const repaired = fromIndex.repaired + fromDisk.repaired;
      const paths = [...fromIndex.paths, ...fromDisk.paths];
      const detail = paths.length > 0 ? `${paths.slice(0, 10).join(', ')}${paths.length > 10 ? ', ...' : ''}` : null;
      return outcome(differences === 0 ? 'clean' : repaired >= differences ? 'repaired' : 'failed', differences, repaired, detail);
    } catch (error) {
      this.report.log.warn({ object: this.id, err: error }, 'audit failed');
      return outcome('failed', 0, 0, (error as Error).message);
    } finally {
      this.auditing = false;
    }
  }

  /** Waits until no change is being applied (and the link is up); false after timeoutMs. */
  private async waitIdle(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.running || this.queue.length > 0 || !this.connected) {
      if (performance.now() > deadline) return false;
      await sleep(20);
    }
    return true;
  }

  /** The index against the primary's, by Merkle digest, at the same position; repairs what differs. */
  private async auditIndex(): Promise<{ differences: number; repaired: number; paths: string[] } | string> {
    for (let attempt = 0; attempt < 10; attempt++) {
      if (attempt > 0 && !(await this.waitIdle(10_000))) return 'the copy stayed busy applying changes';
      const theirs = await this.ask<DigestReply>((reqId) => ({ t: 'audit.digest-request', epoch: this.peer.epoch(), objectId: this.id, reqId, buckets: false }));
      if (!theirs) return 'the primary did not answer the audit';
      // Comparable only at the same position: otherwise the backup is still applying (or the primary capturing).
      if (theirs.seq !== this.object.lastSeq || this.running || this.queue.length > 0) {
        await sleep(100 * (attempt + 1));
        continue;
      }
      const mine = digestIndex(this.store.entries(this.id).values());
      if (mine.root === theirs.root) return { differences: 0, repaired: 0, paths: [] };
      const withBuckets = await this.ask<DigestReply>((reqId) => ({ t: 'audit.digest-request', epoch: this.peer.epoch(), objectId: this.id, reqId, buckets: true }));
      if (!withBuckets?.buckets || withBuckets.seq !== this.object.lastSeq) continue;
      const differing = mine.buckets.flatMap((hash, bucket) => (hash === withBuckets.buckets![bucket] ? [] : [bucket]));
      const listed = await this.ask<EntriesReply>((reqId) => ({ t: 'audit.entries-request', epoch: this.peer.epoch(), objectId: this.id, reqId, buckets: differing }), 60_000);
      if (!listed) return 'the primary did not send the entries to compare';
      if (listed.seq !== this.object.lastSeq || this.running || this.queue.length > 0) continue;
      const wanted = new Set(differing);
      const local = new Map(liveEntries(this.store.entries(this.id).values()).filter((e) => wanted.has(bucketOf(e.path))).map((e) => [e.path, e]));
      const primary = new Map(listed.entries.map((e) => [e.path, e]));
      const repairs: FolderEntry[] = [];
      for (const entry of primary.values()) {
        const have = local.get(entry.path);
        if (!have || !sameEntry(have, entry)) repairs.push({ ...entry, renamedFrom: null });
      }
      // In our index and not in the primary's: it goes (into the versions area).
      for (const entry of local.values()) if (!primary.has(entry.path)) repairs.push({ ...entry, deleted: true, renamedFrom: null });
      const repaired = await this.applyRepairs(repairs);
      return { differences: repairs.length, repaired, paths: repairs.map((r) => r.path) };
    }
    return 'the primary kept changing: no quiet moment to compare the index';
  }

  /** The files on disk against the index (and, with scrub, their content); repairs what differs. */
  private async auditDisk(scrub: boolean | 'slice'): Promise<{ differences: number; repaired: number; paths: string[] }> {
    const index = this.store.entries(this.id);
    const scan = await scanFolder(this.object.target, index, excludeFilter([]), null, { asCopy: true });
    const changed = new Map(scan.changes.map((change) => [change.path, change]));
    if (scrub) {
      for (const entry of this.scrubSelection(index, scrub === 'slice')) {
        if (changed.has(entry.path)) continue;
        let hash: string | null = null;
        try {
          hash = (await this.hasher.hash(resolveInside(this.object.target, entry.path), BlockSize)).fileHash;
        } catch {
          hash = null; // gone or unreadable: the metadata scan tells which
        }
        if (hash !== null && hash !== entry.hash) changed.set(entry.path, { path: entry.path, deleted: false, type: 'file' } as (typeof scan.changes)[number]);
      }
    }
    if (changed.size === 0) return { differences: 0, repaired: 0, paths: [] };
    if (!(await this.waitIdle(30_000))) return { differences: changed.size, repaired: 0, paths: [...changed.keys()] };
    const repairs: FolderEntry[] = [];
    let movedAside = 0;
    for (const change of changed.values()) {
      const known = index.get(change.path);
      if (known && !known.deleted) {
        repairs.push({ ...known, renamedFrom: null });
        continue;
      }
      // Only on the backup: not part of the copy. Kept in the versions area, never deleted.
      const abs = resolveInside(this.object.target, change.path);
      if (!change.deleted && lstatOrNull(abs)) {
        await this.versions.moveAside(abs, change.path);
        movedAside += 1;
      }
    }
    const repaired = await this.applyRepairs(repairs);
    return { differences: changed.size, repaired: repaired + movedAside, paths: [...changed.keys()] };
  }

  /** The files a scrub re-reads: all of them, or the next slice after the last one scrubbed. */
  private scrubSelection(index: Map<string, FolderEntry>, slice: boolean): FolderEntry[] {
    const files = [...index.values()].filter((e) => !e.deleted && e.type === 'file' && e.hash !== null).sort((a, b) => (a.path < b.path ? -1 : 1));
    if (!slice) return files;
    const start = files.findIndex((e) => e.path > this.scrubCursor);
    const ordered = start <= 0 ? files : [...files.slice(start), ...files.slice(0, start)];
    const chosen: FolderEntry[] = [];
    let bytes = 0;
    for (const entry of ordered) {
      if (chosen.length > 0 && bytes + entry.size > ScrubSliceBytes) break;
      chosen.push(entry);
      bytes += entry.size;
    }
    this.scrubCursor = chosen.length === files.length ? '' : (chosen.at(-1)?.path ?? '');
    return chosen;
  }

  /** Applies the primary's versions of these entries (directories first), as one batch; returns how many went in. */
  private async applyRepairs(repairs: FolderEntry[]): Promise<number> {
    if (repairs.length === 0) return 0;
    repairs.sort((a, b) => (a.type === 'dir' && !a.deleted ? 0 : 1) - (b.type === 'dir' && !b.deleted ? 0 : 1) || (a.path < b.path ? -1 : 1));
    this.running = true;
    const generation = this.generation;
    try {
      const applied = await this.applyBatch(repairs, generation);
      if (generation === this.generation) this.store.recordApplied(this.id, applied, this.object.lastSeq);
      this.appliedBatches += 1;
      return applied.length;
    } finally {
      this.running = false;
      if (this.queue.length > 0) void this.run();
    }
  }

  /** Sends a request stamped with a fresh id and waits for its answer (null after timeoutMs or when the link drops). */
  private ask<T>(build: (reqId: number) => ReplicationMessage, timeoutMs = 10_000): Promise<T | null> {
    const reqId = nextReqId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.answers.delete(reqId);
        resolve(null);
      }, timeoutMs);
      this.answers.set(reqId, { parts: [], resolve: (value) => {
        clearTimeout(timer);
        this.answers.delete(reqId);
        resolve(value as T);
      } });
      if (!this.peer.send(build(reqId))) {
        clearTimeout(timer);
        this.answers.delete(reqId);
        resolve(null);
      }
    });
  }

  /** The primary announced this object on a (new) connection: ask for what we lack. */
  announced(source: string): void {
    this.object = { ...this.object, source };
    this.connected = true;
    this.receivedSeq = this.object.lastSeq;
    this.queue = [];
    this.peer.send({ t: 'folder.want', epoch: this.peer.epoch(), position: { epoch: this.peer.epoch(), seq: this.object.lastSeq }, objectId: this.id });
  }

  linkChanged(connected: boolean): void {
    this.connected = connected;
    if (connected) return;
    // Everything in flight belongs to the lost connection; the primary re-sends after our want.
    this.generation += 1;
    this.queue = [];
    this.wholeFiles = [];
    for (const assembly of this.fetches.values()) assembly.fail(new AssemblyError('link lost'));
    this.fetches.clear();
  }

  onMessage(message: ReplicationMessage, body: Buffer): void {
    if ('epoch' in message && message.epoch < this.peer.epoch()) {
      this.report.log.warn({ object: this.id, epoch: message.epoch }, 'message from an older epoch ignored');
      return;
    }
    switch (message.t) {
      case 'folder.changes':
        // Only the continuation of what we have: a message sent before our last want (or after
        // a failure) would leave a gap, and acknowledging past a gap would lose changes.
        if (message.after !== this.receivedSeq) return;
        for (const entry of message.entries) this.queue.push(entry);
        this.receivedSeq = message.position.seq;
        void this.run();
        return;
      case 'folder.block':
        this.fetches.get(message.reqId)?.block(message.index, body);
        return;
      case 'folder.group-hashes': {
        const fetch = this.grouped.get(message.reqId);
        if (!fetch) return;
        this.grouped.delete(message.reqId);
        const blocks = differingBlocks(message.groups, body, message.blocks, fetch.have);
        const epoch = this.peer.epoch();
        if (!this.peer.send({ t: 'folder.fetch', epoch, position: { epoch, seq: fetch.seq }, objectId: this.id, reqId: message.reqId, path: fetch.path, blockSize: BlockSize, blocks })) {
          this.fetches.get(message.reqId)?.fail(new AssemblyError('link down'));
        }
        return;
      }
      case 'folder.fetched': {
        const assembly = this.fetches.get(message.reqId);
        this.fetches.delete(message.reqId);
        assembly?.finish(message);
        return;
      }
      case 'folder.files':
        this.receiveFiles(message, body);
        return;
      case 'folder.progress':
        this.reported = reportedProgress(message);
        return;
      case 'audit.root-request':
        this.peer.send({ t: 'audit.root', epoch: this.peer.epoch(), objectId: this.id, reqId: message.reqId, seq: this.object.lastSeq, root: digestIndex(this.store.entries(this.id).values()).root });
        return;
      case 'audit.digest':
        this.answers.get(message.reqId)?.resolve({ seq: message.seq, root: message.root, buckets: message.buckets } satisfies DigestReply);
        return;
      case 'audit.entries': {
        const waiting = this.answers.get(message.reqId);
        if (!waiting) return;
        waiting.parts.push(...message.entries);
        if (message.last) waiting.resolve({ seq: message.seq, entries: waiting.parts } satisfies EntriesReply);
        return;
      }
      default:
        return;
    }
  }

  status(): ObjectStatus {
    return {
      id: this.id,
      kind: 'folder',
      source: this.object.source,
      target: this.object.target,
      ...reportedStatus(this.reported, { connected: this.connected, error: this.error, pending: this.queue.length }),
      error: this.error,
      progress: null,
      skipped: 0,
      lastAudit: this.latestAudit,
    };
  }

  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    const generation = this.generation;
    try {
      while (this.queue.length > 0 && generation === this.generation) {
        const batch = this.queue.splice(0, BatchEntries);
        const applied = await this.applyBatch(batch, generation);
        if (generation !== this.generation) break;
        const last = batch.at(-1)!.seq;
        this.store.recordApplied(this.id, applied, last);
        this.appliedBatches += 1;
        this.object = { ...this.object, lastSeq: last };
        this.peer.send({ t: 'folder.ack', epoch: this.peer.epoch(), position: { epoch: this.peer.epoch(), seq: last }, objectId: this.id });
        if (this.error) {
          this.error = null;
          this.report.event('folder.recovered', `${this.object.target}: applying changes works again`, { object: this.id });
        }
      }
    } catch (error) {
      const message = `applying changes failed: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
      // Reported once, not at every retry.
      if (this.error !== message) this.report.event('folder.error', `${this.object.target}: ${message}; retrying`, { object: this.id });
      this.error = message;
      // Retry from the last durable position after a pause (disk full, permissions...). Until
      // then nothing newer may be applied: acknowledging it would skip the failed entries.
      this.generation += 1;
      this.queue = [];
      this.receivedSeq = Number.MAX_SAFE_INTEGER;
      setTimeout(() => {
        if (this.connected) this.announced(this.object.source);
      }, 2000);
    } finally {
      this.running = false;
      // A new connection queued entries while a run of the old one was finishing.
      if (this.queue.length > 0) void this.run();
    }
  }

  private async applyBatch(batch: FolderEntry[], generation: number): Promise<FolderEntry[]> {
    const prepared = new Map<number, Promise<Prepared>>();
    const fetchable = (e: FolderEntry) => e.type === 'file' && !e.deleted && e.renamedFrom === null;
    const startAhead = (from: number) => {
      for (let i = from, started = 0; i < batch.length && started < FetchAhead; i++) {
        const entry = batch[i]!;
        if (!fetchable(entry) || superseded(i)) continue;
        started += 1;
        if (!prepared.has(i)) prepared.set(i, this.prepare(entry).catch((error: unknown) => ({ kind: 'skip' as const, reason: `retry:${String(error)}` })));
      }
    };
    // An entry whose path comes again later in the batch is superseded: applying it would only
    // fetch a version that is about to be replaced (a file being edited yields many entries).
    const lastIndex = new Map<string, number>();
    batch.forEach((entry, index) => lastIndex.set(entry.path, index));
    const superseded = (index: number) => lastIndex.get(batch[index]!.path) !== index;
    const dirs = new Set<string>();
    const applied: FolderEntry[] = [];
    this.knownDirs = new Set();
    let i = 0;
    try {
      for (; i < batch.length; i++) {
        if (generation !== this.generation) return applied;
        startAhead(i);
        const entry = batch[i]!;
        if (superseded(i)) continue;
        try {
          const result = await this.apply(entry, prepared.get(i), generation);
          if (result) {
            applied.push(result);
            dirs.add(dirname(resolveInside(this.object.target, entry.path)));
          }
        } catch (error) {
          if (!(error instanceof UnsafePathError)) throw error;
          this.report.event('folder.refused-path', `${this.object.target}: ${error.message}`, { object: this.id, path: entry.path });
        }
      }
      for (const dir of dirs) fsyncDir(dir);
      return applied;
    } finally {
      // Contents fetched ahead for entries that were not reached must not stay behind as temp files.
      for (const [index, pending] of prepared) {
        if (index < i) continue; // installed
        void pending.then((result) => {
          if (result.kind === 'ready') return unlink(result.assembled.temp).catch(() => undefined);
        });
      }
    }
  }

  /** Applies one entry; returns the index row to record, or null when nothing changed. */
  private async apply(entry: FolderEntry, prepared: Promise<Prepared> | undefined, generation: number): Promise<FolderEntry | null> {
    const abs = resolveInside(this.object.target, entry.path);
    if (entry.deleted || entry.type !== 'file' || entry.renamedFrom !== null) this.knownDirs.clear();
    if (entry.deleted) {
      const existing = lstatOrNull(abs);
      if (existing) await this.versions.moveAside(abs, entry.path);
      return entry;
    }
    switch (entry.type) {
      case 'dir': {
        await ensureParents(this.object.target, entry.path, undefined, this.knownDirs);
        const existing = lstatOrNull(abs);
        if (existing && !existing.isDirectory()) await this.versions.moveAside(abs, entry.path);
        if (!existing || !existing.isDirectory()) await mkdir(abs, { mode: entry.mode }).catch(tolerateExisting);
        await chmod(abs, entry.mode);
        if (this.isRoot) await chown(abs, entry.uid, entry.gid);
        return entry;
      }
      case 'symlink': {
        await ensureParents(this.object.target, entry.path, undefined, this.knownDirs);
        const temp = join(dirname(abs), `${TempPrefix}${randomBytes(6).toString('hex')}`);
        await symlink(entry.linkTarget ?? '', temp);
        if (this.isRoot) await lchown(temp, entry.uid, entry.gid);
        await this.makeRoomFor(abs, entry.path, null);
        renameSync(temp, abs);
        return entry;
      }
      case 'file': {
        if (entry.renamedFrom !== null && (await this.renameLocal(entry, abs))) return entry;
        let result = await (prepared ?? this.prepare(entry));
        for (let attempt = 0; result.kind === 'skip' && attempt < UnstableRetries; attempt++) {
          if (result.reason === 'gone') return null; // a later entry says what became of it
          if (generation !== this.generation) return null; // the link was lost: the new one re-sends it
          if (!result.reason.startsWith('retry:') && result.reason !== 'unstable' && result.reason !== 'mismatch') break;
          await sleep(Math.min(1000, 50 * 2 ** Math.min(attempt, 5)));
          result = await this.prepare(entry);
        }
        if (result.kind === 'skip') {
          this.report.event('folder.unsettled', `${entry.path} in ${this.object.source} could not be copied in a stable state (${result.reason}); it will be retried at its next change`, { object: this.id, path: entry.path });
          return null;
        }
        const { assembled, localHash } = result;
        await this.makeRoomFor(abs, entry.path, localHash === assembled.hash ? 'same' : 'keep');
        // Synchronous on purpose: this is the one serial step of applying, and a call through
        // libuv's pool would queue behind the fetches' opens and fsyncs.
        renameSync(assembled.temp, abs);
        return { ...entry, hash: assembled.hash, size: assembled.size, mtimeMs: assembled.mtimeMs };
      }
    }
  }

  /** Before something new takes `abs`: a directory or other type goes aside; a different file version is kept. */
  private async makeRoomFor(abs: string, rel: string, fileVersion: 'same' | 'keep' | null): Promise<void> {
    const existing = lstatOrNull(abs);
    if (!existing) return;
    if (existing.isDirectory()) await this.versions.moveAside(abs, rel);
    else if (existing.isFile() && fileVersion !== 'same') await this.versions.keepCopy(abs, rel);
  }

  /** A rename on the primary: when our copy at the old path is the same file, rename it here too (no data sent). */
  private async renameLocal(entry: FolderEntry, abs: string): Promise<boolean> {
    let from: string;
    try {
      from = resolveInside(this.object.target, entry.renamedFrom!);
    } catch {
      return false;
    }
    const local = lstatOrNull(from);
    if (!local || !local.isFile() || local.size !== entry.size || Math.abs(local.mtimeMs - entry.mtimeMs) >= 1) return false;
    await ensureParents(this.object.target, entry.path);
    await this.makeRoomFor(abs, entry.path, 'keep');
    renameSync(from, abs);
    await chmod(abs, entry.mode);
    if (this.isRoot) await chown(abs, entry.uid, entry.gid);
    fsyncDir(dirname(from));
    return true;
  }

  /** Files we have no version of are asked for together: whatever prepare() asked for in this turn of the event loop. */
  private requestWhole(file: { reqId: number; path: string; seq: number }): void {
    this.wholeFiles.push(file);
    if (this.wholeFiles.length >= MaxFilesPerFetch) this.sendWholeRequest();
    else this.wholeFilesTimer ??= setTimeout(() => this.sendWholeRequest(), 2);
  }

  private sendWholeRequest(): void {
    if (this.wholeFilesTimer) clearTimeout(this.wholeFilesTimer);
    this.wholeFilesTimer = null;
    const files = this.wholeFiles;
    this.wholeFiles = [];
    if (files.length === 0) return;
    const epoch = this.peer.epoch();
    const sent = this.peer.send({
      t: 'folder.fetch-files',
      epoch,
      position: { epoch, seq: files.at(-1)!.seq },
      objectId: this.id,
      blockSize: BlockSize,
      files: files.map(({ reqId, path }) => ({ reqId, path })),
    });
    if (!sent) for (const { reqId } of files) this.fetches.get(reqId)?.fail(new AssemblyError('link down'));
  }

  /** A reply to folder.fetch-files (maybe for another object: fetch ids are node-wide); the body holds the ok files' contents in order. */
  private receiveFiles(message: Extract<ReplicationMessage, { t: 'folder.files' }>, body: Buffer): void {
    const total = message.files.reduce((sum, file) => sum + (file.ok ? file.size : 0), 0);
    if (total !== body.length) {
      this.report.log.warn({ object: this.id, total, body: body.length }, 'folder.files reply whose sizes do not add up; its files are fetched again');
      for (const file of message.files) this.fetches.get(file.reqId)?.fail(new AssemblyError('malformed reply'));
      return;
    }
    let offset = 0;
    for (const file of message.files) {
      const data = file.ok ? body.subarray(offset, offset + file.size) : null;
      if (data) offset += data.length;
      const assembly = this.fetches.get(file.reqId);
      if (!assembly) continue;
      this.fetches.delete(file.reqId);
      if (data && data.length > 0) assembly.block(0, data);
      assembly.finish(file);
    }
  }

  /** Fetches a file's content into a temp file beside it, reusing the blocks we already have. */
  private async prepare(entry: FolderEntry): Promise<Prepared> {
    if (!this.connected) return { kind: 'skip', reason: 'retry:link down' };
    const abs = await ensureParents(this.object.target, entry.path, undefined, this.knownDirs);
    const local = lstatOrNull(abs);
    let localFd: number | null = null;
    let have: Buffer = Buffer.alloc(0);
    let localHash: string | null = null;
    if (local?.isFile()) {
      try {
        const hashes = await this.hasher.hash(abs, BlockSize);
        have = hashes.blocks;
        localHash = hashes.fileHash;
        localFd = openSync(abs, 'r');
      } catch {
        have = Buffer.alloc(0);
      }
    }
    const reqId = nextReqId++;
    let assembly: Assembly;
    try {
      assembly = await Assembly.create(abs, localFd === null ? null : { fd: localFd, hasher: this.hasher }, BlockSize, { mode: entry.mode, uid: entry.uid, gid: entry.gid });
    } catch (error) {
      if (localFd !== null) closeSync(localFd);
      throw error;
    }
    this.fetches.set(reqId, assembly);
    if (have.length === 0) {
      this.requestWhole({ reqId, path: entry.path, seq: entry.seq });
    } else if (have.length / BlockHashBytes > GroupedAboveBlocks) {
      // A large file: group hashes first; the primary's answer (folder.group-hashes) says which groups differ.
      this.grouped.set(reqId, { path: entry.path, seq: entry.seq, have });
      const sent = this.peer.send(
        { t: 'folder.fetch', epoch: this.peer.epoch(), position: { epoch: this.peer.epoch(), seq: entry.seq }, objectId: this.id, reqId, path: entry.path, blockSize: BlockSize, groupBlocks: GroupBlocks },
        groupHashes(have),
      );
      if (!sent) assembly.fail(new AssemblyError('link down'));
    } else {
      const sent = this.peer.send(
        { t: 'folder.fetch', epoch: this.peer.epoch(), position: { epoch: this.peer.epoch(), seq: entry.seq }, objectId: this.id, reqId, path: entry.path, blockSize: BlockSize },
        have,
      );
      if (!sent) assembly.fail(new AssemblyError('link down'));
    }
    try {
      return { kind: 'ready', assembled: await assembly.promise, localHash };
    } catch (error) {
      // Writing here failed (disk full, I/O error): an apply error, not the source's instability.
      if (!(error instanceof AssemblyError)) throw error;
      const reason = error.reason;
      return { kind: 'skip', reason: reason === 'gone' || reason === 'unstable' || reason === 'mismatch' ? reason : `retry:${reason}` };
    } finally {
      this.fetches.delete(reqId);
      this.grouped.delete(reqId);
      if (localFd !== null) closeSync(localFd);
    }
  }
}

/** mkdir lost a race with a concurrent fetch that created the directory: that is fine. */
function tolerateExisting(error: NodeJS.ErrnoException): void {
  if (error.code !== 'EEXIST') throw error;
}

function fsyncDir(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // The directory went away meanwhile; its removal is durable in its parent.
  }
}

/** Synchronous: a metadata lookup in DEST, which we just wrote, is cheaper than a trip through libuv's pool. */
function lstatOrNull(path: string) {
  return lstatSync(path, { throwIfNoEntry: false }) ?? null;
}

/** Removes temp files a crash left in DEST (never following symlinks). */
async function sweepTemps(dir: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.name.startsWith(TempPrefix)) await unlink(path).catch(() => undefined);
    else if (entry.isDirectory()) await sweepTemps(path);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
