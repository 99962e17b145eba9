/**
 * The fault suite's application: a writer that keeps changing the protected folder and the
 * protected database on whichever node acts as primary now, and an observer that keeps
 * reading the other node's copies. Everything it does is recorded with this machine's
 * monotonic clock, so the invariants (scenario.ts) can be checked afterwards against the
 * nodes' own event logs and data.
 *
 * Every file version says where it comes from: its first line is a JSON header with the
 * write's sequence number, the node it was written on and `hist`, the sequence numbers of
 * every version of this path that led to it (the writer reads the version it overwrites on
 * the node it writes to). So the final tree tells exactly which writes are in its lineage,
 * and a divergence archive tells which writes it kept. Rows carry their write's sequence
 * number as their id.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { StatusReport } from '../../../src-main/contract/control.js';
import { ControlClient } from '../../../src-main/engine/control/control-client.js';
import { TempPrefix } from '../../../src-main/engine/objects/folder/scanner.js';

export type DataNode = 'alpha' | 'beta';
export const DataNodes: readonly DataNode[] = ['alpha', 'beta'];

/** This machine's CLOCK_MONOTONIC in ms: the clock of the nodes' `…Mono` event fields. */
export function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

export interface WriteRecord {
  seq: number;
  kind: 'file' | 'row';
  node: DataNode;
  /** Monotonic ms just before the write started (the node was asked whether it acts before this). */
  t0: number;
  /** Monotonic ms once the write returned. */
  t1: number;
  /** Files: the path relative to the folder. */
  path?: string;
  /** Files: whether an existing version was overwritten. */
  overwrite?: boolean;
}

export interface Observation {
  seq: number;
  /** The node whose copy held the write (never the node it was written to). */
  on: DataNode;
  atMono: number;
}

/** One file version's header. */
export interface FileHeader {
  seq: number;
  node: DataNode;
  hist: number[];
}

export interface DataPaths {
  folder: string;
  db: string;
}

export interface StatusSample {
  atMono: number;
  report: StatusReport | null;
}

/** Status of a node through its control socket, or null when it does not answer within `ms` (dead, frozen). */
export async function statusWithin(home: string, ms: number): Promise<StatusReport | null> {
  let client: ControlClient | null = null;
  let timer: NodeJS.Timeout | null = null;
  try {
    const answer = (async () => {
      client = await ControlClient.connect(home);
      return client.call('node:status', {});
    })();
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
    return await Promise.race([answer.catch(() => null), timeout]);
  } finally {
    if (timer) clearTimeout(timer);
    (client as ControlClient | null)?.close();
  }
}

export function parseHeader(content: Buffer | string): FileHeader | null {
  const text = typeof content === 'string' ? content : content.toString('utf8');
  const line = text.slice(0, text.indexOf('\n') >= 0 ? text.indexOf('\n') : undefined);
  try {
    const header = JSON.parse(line) as FileHeader;
    return typeof header.seq === 'number' && Array.isArray(header.hist) ? header : null;
  } catch {
    return null;
  }
}

/** Every regular file under root (relative paths), skipping the engine's temp files. */
export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    let entries;
    try {
      entries = readdirSync(join(root, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.name.startsWith(TempPrefix)) continue;
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) out.push(path);
    }
  };
  walk('');
  return out.sort();
}

/** The writes a tree holds: the union of its files' histories (and each path's header). */
export function treeLineage(root: string): { seqs: Set<number>; headers: Map<string, FileHeader | null> } {
  const seqs = new Set<number>();
  const headers = new Map<string, FileHeader | null>();
  for (const path of listFiles(root)) {
    let header: FileHeader | null = null;
    try {
      header = parseHeader(readFileSync(join(root, path)));
    } catch {
      // vanished meanwhile
    }
    headers.set(path, header);
    for (const seq of header?.hist ?? []) seqs.add(seq);
  }
  return { seqs, headers };
}

/** Row ids of a database file (read-only; empty when it cannot be read). */
export function databaseRows(path: string): Set<number> {
  if (!existsSync(path)) return new Set();
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 2000 });
  try {
    return new Set((db.prepare('SELECT id FROM rows').pluck().all() as number[]).map(Number));
  } catch {
    return new Set();
  } finally {
    db.close();
  }
}

export interface WorkloadOptions {
  data: Record<DataNode, DataPaths>;
  homes: Record<DataNode, string>;
  /** Pause between two writes. @default 40 ms */
  everyMs?: number;
  /** Pause between two looks at the other node's copies. @default 150 ms */
  observeEveryMs?: number;
  /** Share of file writes that overwrite an existing path. @default 0.25 */
  overwriteShare?: number;
}

const Subdirs = ['d0', 'd1', 'd2', 'd3'];

export class Workload {
  readonly writes: WriteRecord[] = [];
  readonly bySeq = new Map<number, WriteRecord>();
  /** First time each write was seen on a node other than the one it was written to. */
  readonly observed = new Map<string, Observation>();
  /** Both nodes said they act as primary in the same round of status questions (informative: the event-log check decides). */
  readonly bothActing: { atMono: number }[] = [];
  /** The latest status of each data node, and when it was taken (null: no answer). */
  readonly lastStatus = new Map<DataNode, StatusSample>();
  /** Every answer in which a node said it acts as primary: it did so at some moment between `from` and `to`. */
  readonly actingClaims: { node: DataNode; from: number; to: number }[] = [];
  /** Writes that failed (the node's files or database were unusable at that moment). */
  failedWrites = 0;
  private seq = 0;
  private readonly paths: string[] = [];
  private readonly dbs = new Map<DataNode, Database.Database>();
  private readonly seen = new Map<string, { mtimeMs: number; size: number; ino: number }>();
  private running = false;
  private loops: Promise<void>[] = [];
  private target: DataNode | null = null;
  private paused = false;
  /** The write under way (settled when none is). */
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly options: WorkloadOptions) {}

  /** Creates the database (WAL) and a first set of files and rows on `node`, before protection starts. */
  seed(node: DataNode, files = 20, rows = 20): void {
    const { folder, db } = this.options.data[node];
    for (const dir of Subdirs) mkdirSync(join(folder, dir), { recursive: true });
    const database = new Database(db);
    database.pragma('journal_mode = WAL');
    database.exec('CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, node TEXT NOT NULL, t REAL NOT NULL, pad BLOB)');
    database.close();
    for (let i = 0; i < files; i++) {
      const seq = ++this.seq;
      const path = `${Subdirs[seq % Subdirs.length]}/f-${seq}.txt`;
      const t0 = monoMs();
      writeFileSync(join(folder, path), fileContent({ seq, node, hist: [seq] }));
      this.record({ seq, kind: 'file', node, t0, t1: monoMs(), path, overwrite: false });
      this.paths.push(path);
    }
    for (let i = 0; i < rows; i++) this.writeRow(node);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loops = [this.writeLoop(), this.observeLoop()];
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  /** Writes nothing until resume(); resolves once a write under way has finished (files are written in place, not atomically). */
  pause(): Promise<void> {
    this.paused = true;
    return this.writing;
  }

  resume(): void {
    this.paused = false;
  }

  close(): void {
    for (const db of this.dbs.values()) {
      try {
        db.close();
      } catch {
        // already closed
      }
    }
    this.dbs.clear();
  }

  /** Which node acts as primary now, asking both (null: none, or both — recorded). */
  async actingNow(timeoutMs = 400): Promise<DataNode | null> {
    const answers = await Promise.all(
      DataNodes.map(async (node) => {
        const from = monoMs();
        const report = await statusWithin(this.options.homes[node], timeoutMs);
        const to = monoMs();
        this.lastStatus.set(node, { atMono: to, report });
        const acting = report?.node.role === 'primary' && report.node.acting;
        if (acting) this.actingClaims.push({ node, from, to });
        return acting ? node : null;
      }),
    );
    const acting = answers.filter((node): node is DataNode => node !== null);
    if (acting.length > 1) {
      this.bothActing.push({ atMono: monoMs() });
      return null;
    }
    return acting[0] ?? null;
  }

  get writesCount(): { files: number; rows: number } {
    let files = 0;
    for (const write of this.writes) if (write.kind === 'file') files++;
    return { files, rows: this.writes.length - files };
  }

  private record(write: WriteRecord): void {
    this.writes.push(write);
    this.bySeq.set(write.seq, write);
  }

  private async writeLoop(): Promise<void> {
    const everyMs = this.options.everyMs ?? 40;
    while (this.running) {
      if (!this.paused) {
        const node = await this.actingNow();
        this.target = node;
        if (node && this.running && !this.paused) {
          this.writing = (async () => {
            await this.writeFile(node).catch(() => void this.failedWrites++);
            try {
              this.writeRow(node);
            } catch {
              this.failedWrites++;
            }
          })();
          await this.writing;
        }
      }
      await sleep(everyMs);
    }
  }

  private async writeFile(node: DataNode): Promise<void> {
    const folder = this.options.data[node].folder;
    const overwrite = this.paths.length > 0 && Math.random() < (this.options.overwriteShare ?? 0.25);
    const seq = ++this.seq;
    const path = overwrite ? this.paths[Math.floor(Math.random() * this.paths.length)]! : `${Subdirs[seq % Subdirs.length]}/f-${seq}.txt`;
    const abs = join(folder, path);
    const t0 = monoMs();
    let hist: number[] = [];
    if (overwrite) {
      const previous = await readFile(abs).catch(() => null);
      hist = (previous && parseHeader(previous)?.hist) || [];
    }
    await writeFile(abs, fileContent({ seq, node, hist: [...hist, seq] }));
    this.record({ seq, kind: 'file', node, t0, t1: monoMs(), path, overwrite });
    if (!overwrite) this.paths.push(path);
  }

  private writeRow(node: DataNode): void {
    const db = this.db(node);
    if (!db) throw new Error(`no database on ${node}`);
    const seq = ++this.seq;
    const t0 = monoMs();
    db.prepare('INSERT INTO rows(id, node, t, pad) VALUES (?, ?, ?, ?)').run(seq, node, t0, randomBytes(16 + Math.floor(Math.random() * 200)));
    this.record({ seq, kind: 'row', node, t0, t1: monoMs() });
  }

  /** The application's connection to a node's database (kept open, as an application would). */
  private db(node: DataNode): Database.Database | null {
    const existing = this.dbs.get(node);
    if (existing) return existing;
    const path = this.options.data[node].db;
    if (!existsSync(path)) return null;
    const db = new Database(path, { fileMustExist: true, timeout: 2000 });
    this.dbs.set(node, db);
    return db;
  }

  private async observeLoop(): Promise<void> {
    const everyMs = this.options.observeEveryMs ?? 150;
    while (this.running) {
      for (const node of DataNodes) {
        if (node === this.target) continue;
        try {
          this.observe(node);
        } catch {
          // a copy being replaced under us: look again next time
        }
      }
      await sleep(everyMs);
    }
  }

  /** Looks at a node's copies now and notes every write of the other node found there. */
  observe(node: DataNode): void {
    const now = monoMs();
    const note = (seq: number) => {
      const write = this.bySeq.get(seq);
      if (!write || write.node === node) return;
      const key = `${seq}@${node}`;
      if (!this.observed.has(key)) this.observed.set(key, { seq, on: node, atMono: now });
    };
    const folder = this.options.data[node].folder;
    for (const path of listFiles(folder)) {
      const abs = join(folder, path);
      let stat;
      try {
        stat = statSync(abs);
      } catch {
        continue;
      }
      const key = `${node}:${path}`;
      const before = this.seen.get(key);
      if (before && before.mtimeMs === stat.mtimeMs && before.size === stat.size && before.ino === stat.ino) continue;
      const header = parseHeader(readFileSync(abs));
      if (!header) continue;
      this.seen.set(key, { mtimeMs: stat.mtimeMs, size: stat.size, ino: stat.ino });
      for (const seq of header.hist) note(seq);
    }
    const db = this.db(node);
    if (db) {
      for (const row of db.prepare('SELECT id, node FROM rows').all() as { id: number; node: string }[]) if (row.node !== node) note(Number(row.id));
    }
  }

  /** Writes of the other node seen on `node`'s copies before `beforeMono`. */
  observedOn(node: DataNode, beforeMono = Number.POSITIVE_INFINITY): Observation[] {
    return [...this.observed.values()].filter((o) => o.on === node && o.atMono < beforeMono);
  }

  /** Rows of a node's live database, through the application's connection. */
  liveRows(node: DataNode): Set<number> {
    const db = this.db(node);
    if (!db) return new Set();
    return new Set((db.prepare('SELECT id FROM rows').pluck().all() as number[]).map(Number));
  }

  /** All rows of a node's live database, in id order, for comparing copies. */
  rowDump(node: DataNode): string {
    const db = this.db(node);
    if (!db) return '';
    return (db.prepare('SELECT id, node, t, hex(pad) AS pad FROM rows ORDER BY id').all() as { id: number; node: string; t: number; pad: string }[])
      .map((row) => `${row.id} ${row.node} ${row.t} ${row.pad}`)
      .join('\n');
  }
}

function fileContent(header: FileHeader): Buffer {
  const pad = randomBytes(32 + Math.floor(Math.random() * 1500)).toString('base64');
  return Buffer.from(`${JSON.stringify(header)}\n${pad}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
