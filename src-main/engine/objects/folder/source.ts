/**
 * The primary's side of a protected folder: watches it (@parcel/watcher, settling bursts
 * for 20 ms), rescans it periodically and after watcher trouble, records changes in the
 * journal, streams them to the backup within a window, and serves the backup's requests
 * for file blocks from a stable read.
 */
import { open, lstat, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import watcher from '@parcel/watcher';
import type { ObjectRecord, ObjectStore } from '../object-store.js';
import { BlockHashBytes } from './hash-worker.js';
import type { Hasher } from './hasher.js';
import { resolveInside, UnsafePathError } from './paths.js';
import { excludeFilter, scanFolder, TempPrefix, type PathFilter } from './scanner.js';
import type { ObjectReporter, ObjectStatus, PeerChannel, ReplicationMessage } from './channel.js';
import { MaxEntriesPerMessage } from '../../link/messages.js';
import { DirectoryWatchers } from './dir-watcher.js';
import { answerDigest, answerEntries } from './audit-answers.js';
import { differingGroups, hashesOfGroups } from './block-groups.js';
import { stage, ThroughputMeter, totals } from '../stages.js';
import type { ObjectStages } from '../../../contract/control.js';

/** How long a burst of watcher events may settle before the paths are scanned. @default 20 ms */
export const DefaultSettleMs = 20;
/** A full rescan catches whatever the watcher missed. @default 60 s */
export const DefaultRescanMs = 60_000;
/** The most bytes of consecutive blocks one folder.block message carries. */
const StreamChunkBytes = 512 * 1024;
/** Changes sent but not yet acknowledged, at most. */
const SendWindow = 4000;
/** Files up to this size travel many to a folder.files reply; larger ones are streamed on their own. */
const SmallFileBytes = 256 * 1024;
/** A folder.files reply is sent once it holds this many bytes of contents. */
const FilesReplyBytes = 4 * 1024 * 1024;
/** Files of one folder.fetch-files request read at once (the disk gets a queue to work on). */
const FilesReadAtOnce = 8;

type FetchRequest = Extract<ReplicationMessage, { t: 'folder.fetch' }>;
type FetchFilesRequest = Extract<ReplicationMessage, { t: 'folder.fetch-files' }>;
type FetchedFile = Extract<ReplicationMessage, { t: 'folder.files' }>['files'][number];
type SmallRead = { kind: 'done'; file: FetchedFile; data: Buffer | null } | { kind: 'large'; abs: string; before: Stats };

export interface SourceOptions {
  settleMs?: number;
  rescanMs?: number;
}

export class FolderSource {
  private subscription: watcher.AsyncSubscription | null = null;
  private readonly dirWatchers: DirectoryWatchers;
  private readonly dirty = new Set<string>();
  /** When the oldest path now in `dirty` was reported (null: none): the capture stage's age. */
  private dirtySince: number | null = null;
  /** The watcher's paths being scanned now, and since when the oldest of them waits. */
  private scanningPaths = 0;
  private scanningSince: number | null = null;
  private readonly throughput = new ThroughputMeter();
  private resyncing = false;
  private settleTimer: NodeJS.Timeout | null = null;
  private rescanTimer: NodeJS.Timeout | null = null;
  private progressTimer: NodeJS.Timeout | null = null;
  private scanning: Promise<void> = Promise.resolve();
  private fullScanning: Promise<void> = Promise.resolve();
  private fullScanWanted = false;
  /** The highest seq sent to the backup on this connection; null until it says what it wants. */
  private sentSeq: number | null = null;
  private pumping = false;
  private stopped = false;
  private error: string | null = null;
  private readonly filter: PathFilter;
  private readonly skippedPaths = new Set<string>();
  private initialStartedAt = Date.now();

  constructor(
    private object: ObjectRecord,
    private readonly store: ObjectStore,
    private readonly hasher: Hasher,
    private readonly peer: PeerChannel,
    private readonly report: ObjectReporter,
    private readonly options: SourceOptions = {},
  ) {
    this.filter = excludeFilter(object.excludes);
    this.dirWatchers = new DirectoryWatchers(object.source, (paths) => this.markDirty(paths), (error) =>
      this.report.log.warn({ object: object.id, err: error.message }, 'per-directory watching failed; relying on the recursive watcher'),
    );
  }

  get id(): string {
    return this.object.id;
  }

  async start(): Promise<void> {
    this.initialStartedAt = Date.now();
    // Watch first, then scan: a file created while the first scan runs is seen by one or the
    // other (scanned the other way round, one created between the two would wait for the next
    // periodic rescan, while the status said in-sync).
    try {
      this.subscription = await watcher.subscribe(this.object.source, (error, events) => this.onWatch(error, events), {
        ignore: [`**/${TempPrefix}*`],
      });
    } catch (error) {
      this.report.log.warn({ object: this.id, err: error }, 'cannot watch the folder; relying on periodic rescans');
    }
    await this.requestFullScan();
    this.rescanTimer = setInterval(() => void this.requestFullScan(), this.options.rescanMs ?? DefaultRescanMs);
    this.progressTimer = setInterval(() => this.sendProgress(), 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of [this.settleTimer, this.rescanTimer, this.progressTimer]) if (timer) clearTimeout(timer);
    this.dirWatchers.close();
    await this.subscription?.unsubscribe().catch(() => undefined);
    await this.scanning.catch(() => undefined);
    await this.fullScanning.catch(() => undefined);
  }

  /**
   * Pauses (true) or resumes sending this folder's changes. Capture goes on either way: changes
   * collect in the journal (one row per path), and a resume sends them from where the backup is.
   */
  setPaused(paused: boolean): void {
    this.store.setPaused(this.id, paused);
    this.object = this.store.getObject(this.id) ?? this.object;
    if (!paused) void this.pump();
    // The backup shows the new state now rather than at the next progress tick.
    this.sendProgress();
  }

  /**
   * `understudy resync`: rescans the whole folder (whatever the watcher missed goes into the
   * journal), then has the backup audit its copy with a full scrub (`auditCopy`), which fetches
   * whatever differs and keeps the backup's versions first. The status says catching-up meanwhile.
   */
  async resync<T>(auditCopy: () => Promise<T>): Promise<T> {
    this.resyncing = true;
    this.sendProgress();
    try {
      await this.flush();
      await this.requestFullScan();
      return await auditCopy();
    } finally {
      this.resyncing = false;
      this.sendProgress();
    }
  }

  /** Captures what changed up to now: waits out the watcher's settling, then scans what it reported. */
  async flush(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, (this.options.settleMs ?? DefaultSettleMs) * 2));
    await this.scanDirty();
    await this.scanning;
  }

  /** The link to the backup came up or went down: what was sent and not acknowledged is re-sent on request. */
  linkChanged(connected: boolean): void {
    this.sentSeq = null;
    if (connected) {
      this.peer.send({ t: 'folder.object', epoch: this.peer.epoch(), position: this.position(this.object.lastSeq), objectId: this.id, source: this.object.source, target: this.object.target, removed: false, kind: 'folder' });
    }
  }

  onMessage(message: ReplicationMessage, body: Buffer): void {
    switch (message.t) {
      case 'audit.digest-request':
        answerDigest(this.store, this.peer, message);
        return;
      case 'audit.entries-request':
        answerEntries(this.store, this.peer, message);
        return;
      case 'folder.want':
        // The backup's want says what it holds; below what it had acknowledged it started over
        // (a deposed primary, after its divergence): until it acknowledges again, it is behind.
        if (message.position.seq < this.object.ackedSeq) {
          this.store.lowerAcked(this.id, message.position.seq);
          this.object = this.store.getObject(this.id) ?? this.object;
        }
        this.sentSeq = message.position.seq;
        this.acknowledge(message.position.seq);
        void this.pump();
        return;
      case 'folder.ack':
        this.acknowledge(message.position.seq);
        void this.pump();
        return;
      case 'folder.fetch':
        void this.serveFetch(message, body);
        return;
      case 'folder.fetch-files':
        void this.serveFetchFiles(message);
        return;
      default:
        return;
    }
  }

  status(): ObjectStatus {
    this.object = this.store.getObject(this.id) ?? this.object;
    const now = Date.now();
    const stages = this.stages(now);
    const { lagMs, pending } = totals(stages);
    return {
      id: this.id,
      kind: 'folder',
      source: this.object.source,
      target: this.object.target,
      state: this.state(pending),
      lagMs,
      pending,
      error: this.error,
      progress: this.object.initialDone ? null : this.progress(),
      skipped: this.skippedPaths.size,
      stages,
      throughput: this.throughput.rate(now),
      paused: this.object.paused,
    };
  }

  /**
   * capture: paths the watcher reported that are not journaled yet (settling, or being scanned);
   * send: journaled, not yet sent to the backup (waiting for the window, the link, or a resume);
   * apply: sent, not yet acknowledged — the backup acknowledges once it has applied them.
   */
  private stages(now: number): ObjectStages {
    const acked = this.object.ackedSeq;
    // Sent on this connection; without one (or before the backup's want) nothing counts as sent.
    const sent = Math.max(acked, this.sentSeq ?? acked);
    const inFlight = sent > acked ? this.store.pendingAfter(this.id, acked, sent) : { count: 0, oldestChangedAt: null };
    const unsent = this.store.pendingAfter(this.id, sent);
    const oldestDirty = Math.min(this.dirtySince ?? Infinity, this.scanningSince ?? Infinity);
    return {
      capture: stage(this.dirty.size + this.scanningPaths, Number.isFinite(oldestDirty) ? oldestDirty : null, now),
      send: stage(unsent.count, unsent.oldestChangedAt, now),
      apply: stage(inFlight.count, inFlight.oldestChangedAt, now),
    };
  }

  private state(pending: number): ObjectStatus['state'] {
    if (this.error) return 'error';
    if (this.object.paused) return 'paused';
    if (!this.object.initialDone) return 'initial-sync';
    if (pending === 0 && !this.resyncing) return 'in-sync';
    return this.peer.connected() ? 'catching-up' : 'paused';
  }

  private progress(): ObjectStatus['progress'] {
    const limit = this.object.initialSeq ?? this.object.lastSeq;
    const { files, bytes, filesDone, bytesDone } = this.store.initialProgress(this.id, limit, this.object.ackedSeq);
    const elapsed = Date.now() - this.initialStartedAt;
    const etaMs = bytesDone > 0 && bytes > bytesDone ? Math.round((elapsed * (bytes - bytesDone)) / bytesDone) : null;
    return { files, filesDone, bytes, bytesDone, etaMs };
  }

  private position(seq: number) {
    return { epoch: this.peer.epoch(), seq };
  }

  private acknowledge(seq: number): void {
    if (seq <= this.object.ackedSeq) return;
    const volume = this.store.changeVolume(this.id, this.object.ackedSeq, seq);
    this.throughput.record(volume.bytes, volume.changes, Date.now());
    this.store.setAcked(this.id, seq);
    this.store.pruneAckedTombstones(this.id, seq);
    this.object = this.store.getObject(this.id) ?? this.object;
    if (!this.object.initialDone && this.object.initialSeq !== null && seq >= this.object.initialSeq) {
      this.store.setInitial(this.id, { initialDone: true });
      this.object.initialDone = true;
      this.report.event('folder.in-sync', `initial sync of ${this.object.source} is complete`, { object: this.id, ms: Date.now() - this.initialStartedAt });
    }
  }

  private onWatch(error: Error | null, events: watcher.Event[]): void {
    if (error) {
      // The watcher lost events (overflow, or the folder went away): only a full rescan is safe.
      this.report.log.warn({ object: this.id, err: error.message }, 'watcher error; rescanning');
      void this.requestFullScan();
      return;
    }
    const paths: string[] = [];
    for (const event of events) {
      const rel = relative(this.object.source, event.path);
      if (rel !== null) paths.push(rel);
    }
    this.markDirty(paths);
  }

  private markDirty(paths: string[]): void {
    if (paths.length > 0 && this.dirtySince === null) this.dirtySince = Date.now();
    for (const path of paths) this.dirty.add(path);
    if (!this.settleTimer) {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = null;
        void this.scanDirty();
      }, this.options.settleMs ?? DefaultSettleMs);
    }
  }

  /**
   * Full rescans run in their own lane, so that a rescan of a large tree (a second or more)
   * never holds back the watcher's small scans; a full scan's findings never overwrite a
   * newer observation a small scan recorded meanwhile (see recordChanges' `notAfter`).
   */
  private requestFullScan(): Promise<void> {
    if (this.fullScanWanted) return this.fullScanning;
    this.fullScanWanted = true;
    this.fullScanning = this.fullScanning.then(async () => {
      this.fullScanWanted = false;
      if (!this.stopped) await this.scan(null);
    });
    return this.fullScanning;
  }

  /** Small scans are serialized: one at a time, each taking what accumulated meanwhile. */
  private scanDirty(): Promise<void> {
    this.scanning = this.scanning.then(async () => {
      if (this.stopped) return;
      const scope = [...this.dirty];
      this.dirty.clear();
      if (scope.length === 0) return;
      this.scanningPaths = scope.length;
      this.scanningSince = this.dirtySince;
      this.dirtySince = null;
      try {
        await this.scan(scope);
      } finally {
        this.scanningPaths = 0;
        this.scanningSince = null;
      }
    });
    return this.scanning;
  }

  private async scan(scope: string[] | null): Promise<void> {
    const startedAt = Date.now();
    try {
      const result = await scanFolder(this.object.source, this.store.entries(this.id), this.filter, scope);
      if (scope === null) result.changes = result.changes.filter((change) => !this.store.observedSince(this.id, change.path, startedAt));
      if (this.error) {
        this.report.event('folder.recovered', `${this.object.source} is readable again`, { object: this.id });
        this.error = null;
      }
      for (const skipped of result.skipped) {
        if (this.skippedPaths.has(skipped.path)) continue;
        this.skippedPaths.add(skipped.path);
        this.report.event('folder.skipped', `${skipped.path} in ${this.object.source} is not replicated: ${skipped.detail}`, { object: this.id, path: skipped.path, reason: skipped.reason });
      }
      const recorded = this.store.recordChanges(this.id, result.changes);
      if (scope === null || recorded.some((e) => e.type === 'dir')) this.watchDirectories();
      // The initial sync is the first full scan, not a watcher's small scan that finished first.
      if (this.object.initialSeq === null && scope === null) {
        const last = recorded.at(-1)?.seq ?? this.object.lastSeq;
        this.store.setInitial(this.id, { initialSeq: last, ...(last === 0 ? { initialDone: true } : {}) });
      }
      this.object = this.store.getObject(this.id) ?? this.object;
      if (recorded.length > 0) void this.pump();
    } catch (error) {
      // The folder is gone or unreadable: report it, and propagate nothing (no deletions).
      const message = `cannot read ${this.object.source}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`;
      if (this.error !== message) {
        this.error = message;
        this.report.event('folder.error', `${message}; nothing is replicated until it is back`, { object: this.id });
      }
    }
  }

  private watchDirectories(): void {
    const dirs = [''];
    for (const entry of this.store.entries(this.id).values()) if (entry.type === 'dir' && !entry.deleted) dirs.push(entry.path);
    this.dirWatchers.sync(dirs);
  }

  /** Sends changes after sentSeq, within the window past the acknowledged seq. */
  private async pump(): Promise<void> {
    if (this.pumping || this.stopped) return;
    this.pumping = true;
    try {
      // Paused: nothing is sent; the journal keeps every change for the resume.
      while (this.sentSeq !== null && this.peer.connected() && !this.object.paused) {
        const room = this.object.ackedSeq + SendWindow - this.sentSeq;
        if (room <= 0) break;
        const entries = this.store.changesAfter(this.id, this.sentSeq, Math.min(room, MaxEntriesPerMessage));
        if (entries.length === 0) break;
        const last = entries.at(-1)!.seq;
        this.peer.send({ t: 'folder.changes', epoch: this.peer.epoch(), position: this.position(last), after: this.sentSeq, objectId: this.id, entries });
        this.sentSeq = last;
        await this.peer.drained();
      }
    } finally {
      this.pumping = false;
    }
  }

  private sendProgress(): void {
    if (!this.peer.connected()) return;
    const status = this.status();
    this.peer.send({ t: 'folder.progress', epoch: this.peer.epoch(), objectId: this.id, state: status.state, lagMs: status.lagMs, pending: status.pending, stages: status.stages, throughput: status.throughput, paused: status.paused });
  }

  /**
   * The backup has no version of this file: send every block, hashing what is sent as it
   * goes (one read, no block hashes needed), and call it stable only if the file's size,
   * mtime, inode and ctime are the same after the read as before.
   */
  private async streamWhole(abs: string, before: Stats, request: { reqId: number; blockSize: number }, fail: (reason: string) => void): Promise<void> {
    const epoch = this.peer.epoch();
    const whole = createHash('sha256');
    const file = await open(abs, 'r');
    let size = 0;
    // Whole runs of blocks go in one message: fewer reads, frames and TLS records.
    const chunkBlocks = Math.max(1, Math.floor(StreamChunkBytes / request.blockSize));
    try {
      for (let index = 0; ; index += chunkBlocks) {
        const buffer = Buffer.allocUnsafe(chunkBlocks * request.blockSize);
        const { bytesRead } = await file.read(buffer, 0, buffer.length, index * request.blockSize);
        if (bytesRead === 0) break;
        const chunk = buffer.subarray(0, bytesRead);
        whole.update(chunk);
        size += bytesRead;
        if (!this.peer.send({ t: 'folder.block', epoch, reqId: request.reqId, index }, chunk)) return;
        if (this.peer.backedUp()) await this.peer.drained();
        if (bytesRead < buffer.length) break;
      }
    } finally {
      await file.close();
    }
    const after = await lstat(abs);
    if (!sameFile(before, after) || size !== before.size) return void fail('unstable');
    this.peer.send({ t: 'folder.fetched', epoch, reqId: request.reqId, ok: true, size, hash: whole.digest('hex'), mtimeMs: before.mtimeMs, reason: null });
  }

  /**
   * Whole files for a backup that has no version of them: small ones are read whole and sent
   * many to a message (ten thousand small files cost tens of messages, not thirty thousand),
   * larger ones are streamed as a folder.fetch without block hashes would be.
   */
  private async serveFetchFiles(request: FetchFilesRequest): Promise<void> {
    const epoch = this.peer.epoch();
    let files: FetchedFile[] = [];
    let contents: Buffer[] = [];
    let bytes = 0;
    const flush = async () => {
      if (files.length === 0) return;
      const sent = this.peer.send({ t: 'folder.files', epoch, files }, Buffer.concat(contents, bytes));
      files = [];
      contents = [];
      bytes = 0;
      if (sent && this.peer.backedUp()) await this.peer.drained();
    };
    let next = 0;
    const worker = async () => {
      while (next < request.files.length && this.peer.connected()) {
        const { reqId, path } = request.files[next++]!;
        const read = await this.readSmall(reqId, path);
        if (read.kind === 'large') {
          const fail = (reason: string) => this.peer.send({ t: 'folder.fetched', epoch, reqId, ok: false, size: 0, hash: null, mtimeMs: 0, reason });
          try {
            await this.streamWhole(read.abs, read.before, { reqId, blockSize: request.blockSize }, fail);
          } catch (error) {
            fail(readFailure(error));
          }
          continue;
        }
        files.push(read.file);
        if (read.data) {
          contents.push(read.data);
          bytes += read.data.length;
        }
        if (bytes >= FilesReplyBytes) await flush();
      }
    };
    await Promise.all(Array.from({ length: FilesReadAtOnce }, worker));
    await flush();
  }

  /** Reads a small file whole, through one descriptor (never through a symlink), and calls it stable only if nothing changed meanwhile. */
  private async readSmall(reqId: number, path: string): Promise<SmallRead> {
    const failed = (reason: string): SmallRead => ({ kind: 'done', file: { reqId, ok: false, size: 0, hash: null, mtimeMs: 0, reason }, data: null });
    let abs: string;
    try {
      abs = resolveInside(this.object.source, path);
    } catch (error) {
      if (error instanceof UnsafePathError) this.report.log.warn({ object: this.id, path }, 'fetch of an unsafe path refused');
      return failed('refused path');
    }
    let file: FileHandle;
    try {
      file = await open(abs, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
    } catch (error) {
      return failed((error as NodeJS.ErrnoException).code === 'ELOOP' ? 'gone' : readFailure(error));
    }
    try {
      const before = await file.stat();
      if (!before.isFile()) return failed('gone');
      if (before.size > SmallFileBytes) return { kind: 'large', abs, before };
      const data = Buffer.allocUnsafe(before.size);
      let size = 0;
      while (size < data.length) {
        const { bytesRead } = await file.read(data, size, data.length - size, size);
        if (bytesRead === 0) break;
        size += bytesRead;
      }
      const after = await file.stat();
      if (size !== before.size || !sameFile(before, after)) return failed('unstable');
      const hash = createHash('sha256').update(data).digest('hex');
      return { kind: 'done', file: { reqId, ok: true, size, hash, mtimeMs: before.mtimeMs, reason: null }, data };
    } catch (error) {
      return failed(readFailure(error));
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  /** Streams the blocks of a file that differ from the backup's, from a read proven stable. */
  private async serveFetch(request: FetchRequest, have: Buffer): Promise<void> {
    const epoch = this.peer.epoch();
    const fail = (reason: string) =>
      this.peer.send({ t: 'folder.fetched', epoch, reqId: request.reqId, ok: false, size: 0, hash: null, mtimeMs: 0, reason });
    let abs: string;
    try {
      abs = resolveInside(this.object.source, request.path);
    } catch (error) {
      if (error instanceof UnsafePathError) this.report.log.warn({ object: this.id, path: request.path }, 'fetch of an unsafe path refused');
      fail('refused path');
      return;
    }
    try {
      const before = await lstat(abs);
      if (!before.isFile()) return void fail('gone');
      if (have.length === 0 && request.blocks === undefined) return void (await this.streamWhole(abs, before, request, fail));
      const hashes = await this.hasher.hash(abs, request.blockSize);
      if (hashes.size !== before.size || hashes.mtimeMs !== before.mtimeMs) return void fail('unstable');
      const blocks = hashes.blocks.length / BlockHashBytes;
      if (request.groupBlocks !== undefined && request.blocks === undefined) {
        // First round of a grouped fetch: our hashes for the groups that differ; the backup asks for blocks next.
        const groups = differingGroups(hashes.blocks, have, request.groupBlocks);
        this.peer.send({ t: 'folder.group-hashes', epoch, reqId: request.reqId, blocks, groups }, hashesOfGroups(hashes.blocks, groups, request.groupBlocks));
        return;
      }
      const wanted = request.blocks ? new Set(request.blocks) : null;
      const file = await open(abs, 'r');
      try {
        for (let index = 0; index < blocks; index++) {
          const at = index * BlockHashBytes;
          if (wanted ? !wanted.has(index) : at + BlockHashBytes <= have.length && have.subarray(at, at + BlockHashBytes).equals(hashes.blocks.subarray(at, at + BlockHashBytes))) continue;
          const buffer = Buffer.allocUnsafe(Math.min(request.blockSize, hashes.size - index * request.blockSize));
          const { bytesRead } = await file.read(buffer, 0, buffer.length, index * request.blockSize);
          if (!this.peer.send({ t: 'folder.block', epoch, reqId: request.reqId, index }, buffer.subarray(0, bytesRead))) return;
          if (this.peer.backedUp()) await this.peer.drained();
        }
      } finally {
        await file.close();
      }
      const after = await lstat(abs);
      if (!sameFile(before, after)) return void fail('unstable');
      this.peer.send({ t: 'folder.fetched', epoch, reqId: request.reqId, ok: true, size: hashes.size, hash: hashes.fileHash, mtimeMs: before.mtimeMs, reason: null });
    } catch (error) {
      fail(readFailure(error));
    }
  }
}

function readFailure(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'gone' : `unreadable: ${code ?? (error as Error).message}`;
}

function sameFile(a: Stats, b: Stats): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino && a.ctimeMs === b.ctimeMs;
}

/** The path of abs relative to root with '/' separators, or null when it is not inside root. */
function relative(root: string, abs: string): string | null {
  if (abs === root) return '';
  if (!abs.startsWith(`${root}/`)) return null;
  return abs.slice(root.length + 1);
}

