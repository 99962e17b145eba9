/**
 * npm run bench:sqlite — SQLite replication between two real nodes on loopback, seen from the
 * application's side, with anchors measured in the same run.
 *
 * The application is its own process (bench/sqlite-app.ts, forked): small transactions on a
 * WAL database opened with synchronous=NORMAL and busy_timeout=10000 — per transaction 2
 * inserts into `items` (indexed), 2 updates of random `accounts` rows (10,000 of them) and, last,
 * the insert of its sequence number and its time into `log`. Times are CLOCK_MONOTONIC (via
 * process.hrtime), which all processes on the machine share exactly (performance.timeOrigin is
 * set per process, so it can differ between two processes by a fraction of a millisecond).
 *
 * 1. Commit latency (from the start of the transaction to COMMIT returning) p50/p99 at --rate
 *    (1,000) tx/s, paced for --seconds (10), with protection OFF (the nodes run, paired and idle,
 *    but nothing protects the file), then ON (after `understudy protect sqlite SRC --to DEST`
 *    and its first in-sync), against the goal p99(on) <= 1.2 x p99(off). Then write throughput
 *    at saturation (back-to-back transactions for --sat-seconds, 5), OFF then ON, goal
 *    ON / OFF >= 0.8; after the ON burst, the time until the primary says in-sync again.
 *    During both paced runs a reader process (bench/sqlite-reader.ts) polls a database
 *    read-only every ~1 ms: SRC in the OFF run (same load on the machine; its numbers are the
 *    visibility on the primary itself), DEST in the ON run.
 * 2. Lag from commit on the primary to the transaction readable on the backup, p50/p99, from
 *    the ON paced run: the reader asks DEST for the `log` rows above the last seq it saw
 *    (`SELECT seq, t FROM log WHERE seq > ? ORDER BY seq`), and each seq newly visible gets
 *    lag = time of that poll - time its COMMIT returned in the app (all seqs between the last
 *    seen and the new max became visible at that poll). The poll period bounds the error
 *    (~1 ms). Transactions never visible within 10 s after the app stopped are reported as
 *    lost; the rows below the largest visible seq are counted too (a gap would be a torn state).
 *    Runs of transactions visible more than 20 ms after commit are listed as stalls, with their
 *    wall-clock time, next to the primary's resyncs from its log. Goal p99 <= 50 ms. Context, not measured: Litestream ships WAL to its replica every
 *    `sync-interval`, 1 s by default.
 * 3. Initial sync of a --db-mib (1024) MiB database (rows of randomblob(3800), generated in big
 *    transactions) while the app writes --initial-rate (200) tx/s: time from `protect` (the
 *    control call; the CLI's own start-up is not counted) to the primary's status first saying
 *    `in-sync` (polled every --poll-ms, 50). Anchor, in the same run: `sqlite3 SRC ".backup X"`
 *    followed by `cp X Y`, with the app paused (SQLite's backup API restarts from page 1 whenever
 *    another connection writes the source, so under the app's writes it may never finish: that
 *    is tried too, bounded, and reported as context, as is `VACUUM INTO` + cp under the load).
 *    After the app stops and the backup caught up: DEST compared page by page with SRC (through
 *    sqlite_dbpage, SHA-256 of every page), PRAGMA integrity_check on DEST, row counts. The small
 *    database of 1-2 is unprotected first, so this sync runs alone. The wait gives up early
 *    when the backup reported `sqlite.error` for the object twice (a failed apply, then its retry).
 *    SQLite never uses the page holding byte 2^30 (the lock-byte page), so a database over 1 GiB
 *    has one page that sqlite_dbpage reads as zeros; the comparison sees it like any other.
 * 4. The engine's memory (VmHWM and VmRSS of both `serve` processes, /proc/PID/status) at the
 *    end of the ON paced run, and its CPU share during that run: utime+stime (/proc/PID/stat)
 *    over the run's wall time, as % of one core (the machine has 2). As evidence of CPU
 *    contention, the time the engine's, the app's threads spent runnable but waiting for a core
 *    (/proc/PID/task/N/schedstat), and the other processes competing (other nodes, tests,
 *    benches) with the load average before each timed part.
 *
 * The table prints measure, ours, anchor, ratio, goal, met/missed; bench/results/sqlite.json
 * has every number, the engine's commit and the versions. Nothing here asserts timings: a
 * failure is reported in the table (FAILED) and the run goes on where it can.
 * Needs Linux (/proc); the sqlite3 CLI is installed with apt-get when missing (root).
 * Options: --seconds N (10) --rate N (1000) --sat-seconds N (5) --db-mib N (1024)
 *          --initial-rate N (200) --poll-ms N (50) --accounts N (10000)
 *          --dump: also write the paced runs' per-transaction times to bench/results/sqlite-raw.json
 *          --repeat N (1): run the saturation pair (OFF then ON) N times in all — each repeat
 *          unprotects the small database, runs OFF, protects it again (to a new copy) and runs
 *          ON — and print every ratio and their median; the table's throughput line stays the
 *          first pair's, measured like a run without --repeat
 * Smoke run (< 1 min): --seconds 2 --sat-seconds 1 --db-mib 32
 */
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { ObjectStatus } from '../src-main/contract/control.js';
import { pairNodes, sleep, TestNode } from '../test/support/harness.js';
import type { AppJob, AppReply, AppRun } from './sqlite-app.js';
import type { ReaderJob, ReaderReply, ReaderSeen } from './sqlite-reader.js';
import { distribution, printTable, writeResults, type Distribution } from './stats.js';
import { checkNoise, engineVersion, fail, failures, freeBytes, log, machineNoise, nodeDiagnostics, note, notes, objectStatus, ownPids, ratio, run, which } from './support.js';

// ---------------------------------------------------------------------------------------------
// Options

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number (got '${process.argv[i + 1] ?? ''}')`);
  return value;
}

const settings = {
  seconds: option('seconds', 10),
  rate: option('rate', 1000),
  satSeconds: option('sat-seconds', 5),
  dbMiB: option('db-mib', 1024),
  initialRate: option('initial-rate', 200),
  pollMs: option('poll-ms', 50),
  accounts: Math.round(option('accounts', 10_000)),
  /** --repeat N: the saturation pair (OFF then ON) runs N times in all, to show its run-to-run variance. */
  repeat: Math.round(option('repeat', 1)),
  readerEveryMs: 1,
};

/** The events worth showing when a run failed. */
const SqliteEvents = /error|diverged|resync|refused/;
const MiB = 1024 * 1024;
const BlobBytes = 3800;
/** After the app stops, how long the reader keeps looking for the last transaction. */
const LostAfterMs = 10_000;
const Goals = { latencyP99Ratio: 1.2, throughputRatio: 0.8, lagP99Ms: 50 };
const LitestreamSyncIntervalS = 1;
/** A transaction this late to become visible belongs to a stall episode (reported in the results). */
const StallMs = 20;
/** --dump: the per-transaction arrays of the paced runs go to bench/results/sqlite-raw.json. */
const dumpRaw = process.argv.includes('--dump');
const rawRuns: Record<string, unknown> = {};

// ---------------------------------------------------------------------------------------------
// Small helpers (as in bench/folder.ts)


function round(value: number | null | undefined, digits = 2): number | null {
  if (value === null || value === undefined || !Number.isFinite(value)) return null;
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

/** Polls check until it returns a value; fails after timeoutMs. */
async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  options: { timeoutMs: number; everyMs: number; progress?: () => string; giveUp?: (error: unknown) => boolean },
): Promise<T> {
  const started = Date.now();
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
      lastError = null;
    } catch (error) {
      if (options.giveUp?.(error)) throw error;
      lastError = error;
    }
    if (Date.now() - started > options.timeoutMs) {
      const detail = `${options.progress ? `; last seen: ${options.progress()}` : ''}${lastError ? `; last error: ${String(lastError)}` : ''}`;
      throw new Error(`timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${what}${detail}`);
    }
    await sleep(options.everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Environment

function ensureSqlite3(): string {
  let sqlite3 = which('sqlite3');
  if (sqlite3) return sqlite3;
  if (process.getuid?.() !== 0) throw new Error('the sqlite3 CLI is not installed and this is not root: install sqlite3');
  console.log('sqlite3 is not installed: installing it with apt-get install -y sqlite3');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update'], { encoding: 'utf8', env });
  const install = update.status === 0 ? spawnSync('apt-get', ['install', '-y', 'sqlite3'], { encoding: 'utf8', env }) : update;
  sqlite3 = which('sqlite3');
  if (install.status !== 0 || !sqlite3) throw new Error(`could not install sqlite3: ${`${install.stdout}${install.stderr}`.trim().split('\n').slice(-3).join(' | ')}`);
  return sqlite3;
}



/** CPU seconds (user + system, all threads) from /proc/PID/stat, at the usual 100 ticks a second. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/**
 * Seconds the process's threads spent waiting on a run queue (/proc/PID/task/N/schedstat, second
 * field, ns): runnable but not running — the cost of sharing the 2 cores.
 */
function runDelaySeconds(pid: number): number | null {
  try {
    let ns = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[1]);
    return ns / 1e9;
  } catch {
    return null;
  }
}

interface Memory {
  hwmMiB: number | null;
  rssMiB: number | null;
}

function memory(pid: number): Memory {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => {
      const value = new RegExp(`${field}:\\s*(\\d+)\\s*kB`).exec(status)?.[1];
      return value ? round(Number(value) / 1024, 1) : null;
    };
    return { hwmMiB: kb('VmHWM'), rssMiB: kb('VmRSS') };
  } catch {
    return { hwmMiB: null, rssMiB: null };
  }
}

// ---------------------------------------------------------------------------------------------
// The app and the reader processes

const benchDir = fileURLToPath(new URL('.', import.meta.url));

class AppProcess {
  private readonly child: ChildProcess;
  private readonly waiting: { resolve: (reply: AppReply) => void; reject: (error: Error) => void }[] = [];
  private exited = false;
  output = '';

  constructor() {
    this.child = fork(join(benchDir, 'sqlite-app.js'), [], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    if (this.child.pid) ownPids.add(this.child.pid);
    this.child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.on('message', (reply: AppReply) => this.waiting.shift()?.resolve(reply));
    // 'close', not 'exit': by then every IPC message the child sent has been delivered.
    this.child.once('close', (code, signal) => {
      this.exited = true;
      for (const w of this.waiting.splice(0)) w.reject(new Error(`the app process exited (${code ?? signal}): ${this.output.trim().slice(-500)}`));
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  private request(job: AppJob): Promise<AppReply> {
    if (this.exited) return Promise.reject(new Error('the app process is gone'));
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.child.send(job);
    });
  }

  async init(db: string, accounts: number): Promise<number> {
    const reply = await this.request({ op: 'init', db, accounts });
    if (reply.op !== 'ready') throw new Error(`app init: ${reply.op === 'error' ? reply.message : reply.op}`);
    return reply.rows;
  }

  /** Starts a run; the promise settles when it ends (seconds = 0: at stop()). */
  async run(db: string, mode: 'paced' | 'saturate', rate: number, seconds: number): Promise<AppRun> {
    const reply = await this.request({ op: 'run', db, mode, rate, seconds });
    if (reply.op !== 'done') throw new Error(`app run: ${reply.op === 'error' ? reply.message : reply.op}`);
    return reply;
  }

  stop(): void {
    if (!this.exited) this.child.send({ op: 'stop' } satisfies AppJob);
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((resolve) => this.child.once('close', resolve));
    this.child.send({ op: 'close' } satisfies AppJob);
    await Promise.race([gone, sleep(5000)]);
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

class ReaderProcess {
  private readonly child: ChildProcess;
  private readonly replies: ReaderReply[] = [];
  private wake: (() => void) | null = null;
  private exitedWith: string | null = null;
  output = '';

  constructor() {
    this.child = fork(join(benchDir, 'sqlite-reader.js'), [], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    if (this.child.pid) ownPids.add(this.child.pid);
    this.child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.child.on('message', (reply: ReaderReply) => {
      this.replies.push(reply);
      this.wake?.();
    });
    this.child.once('close', (code, signal) => {
      this.exitedWith = String(code ?? signal);
      this.wake?.();
    });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  private async next(timeoutMs: number): Promise<ReaderReply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = this.replies.shift();
      if (reply) {
        if (reply.op === 'error') throw new Error(`reader: ${reply.message}`);
        return reply;
      }
      if (this.exitedWith !== null) throw new Error(`the reader exited (${this.exitedWith}): ${this.output.trim().slice(-500)}`);
      if (Date.now() > deadline) throw new Error(`the reader did not answer within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
      this.wake = null;
    }
  }

  /** Starts polling db; resolves with the largest seq visible at the start. */
  async watch(db: string, everyMs: number): Promise<number> {
    this.child.send({ op: 'watch', db, everyMs } satisfies ReaderJob);
    const reply = await this.next(130_000);
    if (reply.op !== 'watching') throw new Error(`reader: unexpected ${reply.op}`);
    return reply.baseline;
  }

  async finish(lastSeq: number, graceMs: number): Promise<ReaderSeen> {
    this.child.send({ op: 'finish', lastSeq, graceMs } satisfies ReaderJob);
    const reply = await this.next(graceMs + 30_000);
    if (reply.op !== 'seen') throw new Error(`reader: unexpected ${reply.op}`);
    return reply;
  }

  kill(): void {
    if (this.exitedWith === null) this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// Talking to the nodes

function statusText(status: ObjectStatus | undefined): string {
  if (!status) return 'no status';
  return `${status.state}, pending ${status.pending}, lag ${status.lagMs} ms, txid ${status.txid ?? '?'}${status.error ? `, error ${status.error}` : ''}`;
}

/**
 * Polls the primary every everyMs until the object says in-sync; returns ms since `since`.
 * With `backup`, gives up once the backup has reported sqlite.error for the object twice (its
 * first failure is retried by the engine; the retry failing too is not going to end well).
 */
async function waitInSync(primary: TestNode, id: string, since: number, timeoutMs: number, everyMs: number, backup?: TestNode): Promise<number> {
  let last: ObjectStatus | undefined;
  const mark = backup?.events.length ?? 0;
  return waitUntil(
    `object ${id} in-sync`,
    async () => {
      last = await objectStatus(primary, id);
      if (last?.state === 'error') throw new Error(`object in error: ${last.error ?? ''}`);
      if (last?.state === 'in-sync') return performance.now() - since;
      const errors = backup ? backup.events.slice(mark).filter((e) => e.type === 'sqlite.error' && e.object === id) : [];
      if (errors.length >= 2) {
        throw new GaveUp(`the backup failed to apply it ${errors.length} times (primary says ${statusText(last)}): ${errors.map((e) => `${e.at.slice(11, 23)} ${e.message}`).join(' | ')}`);
      }
      return undefined;
    },
    { timeoutMs, everyMs, progress: () => statusText(last), giveUp: (error) => error instanceof GaveUp },
  );
}

class GaveUp extends Error {}

/** In sync, nothing pending, and the backup's txid unchanged across two looks 300 ms apart. */
async function waitSettled(primary: TestNode, id: string, timeoutMs: number): Promise<void> {
  let last: ObjectStatus | undefined;
  let previousTxid = -1;
  await waitUntil(
    `object ${id} settled (in-sync, txid stable)`,
    async () => {
      last = await objectStatus(primary, id);
      const settled = last?.state === 'in-sync' && last.pending === 0 && last.txid === previousTxid;
      previousTxid = last?.state === 'in-sync' && last.pending === 0 ? (last.txid ?? -1) : -1;
      return settled ? true : undefined;
    },
    { timeoutMs, everyMs: 300, progress: () => statusText(last) },
  );
}

/** The primary's 'database resync sent' log lines for an object: how long reading, hashing and sending every page took. */
function resyncsSent(node: TestNode, objectId: string): { at: string; ms: number; pages: number; differing: number; reason: string }[] {
  const found: { at: string; ms: number; pages: number; differing: number; reason: string }[] = [];
  try {
    for (const name of readdirSync(join(node.home, 'logs')).sort()) {
      for (const line of readFileSync(join(node.home, 'logs', name), 'utf8').split('\n')) {
        if (!line.includes('database resync sent') || !line.includes(objectId)) continue;
        try {
          const entry = JSON.parse(line) as { time?: number | string; ms?: number; pages?: number; differing?: number; reason?: string };
          found.push({ at: String(entry.time ?? ''), ms: entry.ms ?? NaN, pages: entry.pages ?? NaN, differing: entry.differing ?? NaN, reason: entry.reason ?? '' });
        } catch {
          // a line cut by rotation
        }
      }
    }
  } catch {
    // no logs
  }
  return found;
}

/** sqlite.* events of either node since the marks, counted by type. */
function eventCounts(nodes: TestNode[], marks: number[]): Record<string, number> {
  const counts: Record<string, number> = {};
  nodes.forEach((node, i) => {
    for (const e of node.events.slice(marks[i])) if (e.type.startsWith('sqlite.') || e.type.startsWith('peer.')) counts[`${node.name}:${e.type}`] = (counts[`${node.name}:${e.type}`] ?? 0) + 1;
  });
  return counts;
}

/** Watches the primary's status of one object every 250 ms: the largest lag and pending it reports. */
class StatusWatch {
  maxLagMs = 0;
  maxPending = 0;
  samples = 0;
  states: Record<string, number> = {};
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(node: TestNode, id: string) {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          const s = await objectStatus(node, id);
          if (s) {
            this.samples += 1;
            this.maxLagMs = Math.max(this.maxLagMs, s.lagMs);
            this.maxPending = Math.max(this.maxPending, s.pending);
            this.states[s.state] = (this.states[s.state] ?? 0) + 1;
          }
        } catch {
          // a slow status call is not what this watches
        }
        await sleep(250);
      }
    })();
  }

  async stop(): Promise<{ maxLagMs: number; maxPending: number; samples: number; states: Record<string, number> }> {
    this.stopped = true;
    await this.loop;
    return { maxLagMs: this.maxLagMs, maxPending: this.maxPending, samples: this.samples, states: this.states };
  }
}

// ---------------------------------------------------------------------------------------------
// Databases: generation and comparison

/** A database of about `mib` MiB: one row of randomblob(3800) a page, inserted 64 MiB a transaction. */
function generateBigDatabase(path: string, mib: number): { rows: number; bytes: number; ms: number } {
  const started = performance.now();
  const db = new Database(path);
  try {
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.exec('CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB NOT NULL)');
    const insert = db.prepare('WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) INSERT INTO blobs(data) SELECT randomblob(?) FROM c');
    const target = mib * MiB;
    const perRow = 4096;
    let rows = 0;
    while (statSync(path).size < target) {
      const n = Math.max(1, Math.min(16_384, Math.ceil((target - statSync(path).size) / perRow)));
      insert.run(n, BlobBytes);
      rows += n;
    }
    return { rows, bytes: statSync(path).size, ms: performance.now() - started };
  } finally {
    db.close();
  }
}

interface PageComparison {
  pagesSrc: number;
  pagesDest: number;
  pageSize: number;
  differing: number;
  /** The first differing page numbers, and for page 1 the byte offsets that differ. */
  firstDiffering: number[];
  page1Offsets: number[];
  /**
   * True when the only differences are in page 1's bytes 24-27 (file change counter) and 92-99
   * (version-valid-for, SQLite version), which SQLite itself rewrites on each side whenever a
   * WAL commit includes page 1 (pager_write_changecounter): the copy's counters run on their own.
   */
  onlyHeaderCounters: boolean;
  /** Page 1's file change counter (bytes 24-27) and version-valid-for (92-95) on each side. */
  page1Header: { src: [number, number]; dest: [number, number] } | null;
  identical: boolean;
  ms: number;
}

/** Every page of both databases through sqlite_dbpage (each read in one read transaction), compared by SHA-256. */
function comparePages(src: string, dest: string): PageComparison {
  const started = performance.now();
  const a = new Database(src, { readonly: true, fileMustExist: true });
  const b = new Database(dest, { readonly: true, fileMustExist: true });
  try {
    a.exec('BEGIN');
    b.exec('BEGIN');
    const pagesSrc = Number(a.pragma('page_count', { simple: true }));
    const pagesDest = Number(b.pragma('page_count', { simple: true }));
    const pageSize = Number(a.pragma('page_size', { simple: true }));
    const readA = a.prepare('SELECT pgno, data FROM sqlite_dbpage WHERE pgno BETWEEN ? AND ?');
    const readB = b.prepare('SELECT pgno, data FROM sqlite_dbpage WHERE pgno BETWEEN ? AND ?');
    let differing = Math.abs(pagesSrc - pagesDest);
    const firstDiffering: number[] = [];
    let page1Offsets: number[] = [];
    let page1Header: PageComparison['page1Header'] = null;
    let otherDifferences = pagesSrc !== pagesDest;
    const step = 4096;
    for (let first = 1; first <= Math.min(pagesSrc, pagesDest); first += step) {
      const last = Math.min(pagesSrc, pagesDest, first + step - 1);
      const pa = readA.all(first, last) as { pgno: number; data: Buffer }[];
      const pb = readB.all(first, last) as { pgno: number; data: Buffer }[];
      for (let i = 0; i < pa.length; i++) {
        const x = pa[i]!.data;
        const y = pb[i]?.data;
        if (y && createHash('sha256').update(x).digest().equals(createHash('sha256').update(y).digest())) continue;
        differing += 1;
        if (firstDiffering.length < 10) firstDiffering.push(pa[i]!.pgno);
        if (pa[i]!.pgno !== 1 || !y) otherDifferences = true;
        else {
          const offsets = [...x.keys()].filter((k) => x[k] !== y[k]);
          if (offsets.some((k) => !((k >= 24 && k <= 27) || (k >= 92 && k <= 99)))) otherDifferences = true;
          page1Offsets = offsets.slice(0, 16);
          page1Header = { src: [x.readUInt32BE(24), x.readUInt32BE(92)], dest: [y.readUInt32BE(24), y.readUInt32BE(92)] };
        }
      }
    }
    return { pagesSrc, pagesDest, pageSize, differing, firstDiffering, page1Offsets, onlyHeaderCounters: differing > 0 && !otherDifferences, page1Header, identical: differing === 0, ms: Math.round(performance.now() - started) };
  } finally {
    a.close();
    b.close();
  }
}

interface CopyCheck {
  pages: PageComparison | null;
  integrity: string | null;
  rows: Record<string, { src: number; dest: number }>;
  rowsMatch: boolean;
  ok: boolean;
  error: string | null;
}

function checkCopy(src: string, dest: string, tables: string[]): CopyCheck {
  const result: CopyCheck = { pages: null, integrity: null, rows: {}, rowsMatch: false, ok: false, error: null };
  try {
    result.pages = comparePages(src, dest);
    const a = new Database(src, { readonly: true, fileMustExist: true });
    const b = new Database(dest, { readonly: true, fileMustExist: true });
    try {
      result.integrity = (b.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).slice(0, 5).join('; ');
      for (const table of tables) {
        result.rows[table] = {
          src: Number(a.prepare(`SELECT count(*) FROM ${table}`).pluck().get()),
          dest: Number(b.prepare(`SELECT count(*) FROM ${table}`).pluck().get()),
        };
      }
    } finally {
      a.close();
      b.close();
    }
    result.rowsMatch = Object.values(result.rows).every((r) => r.src === r.dest);
    result.ok = result.integrity === 'ok' && result.rowsMatch;
  } catch (error) {
    result.error = error instanceof Error ? error.message : String(error);
  }
  return result;
}

function copyText(check: CopyCheck | null): string {
  if (!check) return 'not checked';
  if (check.error) return `check failed: ${check.error}`;
  const p = check.pages;
  let pages = '?';
  if (p?.identical) pages = `page-identical (${p.pagesSrc} pages)`;
  else if (p?.onlyHeaderCounters) pages = `${p.pagesSrc} pages identical but page 1's change counter (SRC ${p.page1Header?.src[0]}, DEST ${p.page1Header?.dest[0]})`;
  else if (p) {
    const page1 = p.page1Offsets.length > 0 ? `; page 1 bytes ${p.page1Offsets.join(',')}` : '';
    pages = `${p.differing} of ${p.pagesSrc} pages differ (DEST has ${p.pagesDest}; first: ${p.firstDiffering.join(',')}${page1})`;
  }
  return `${pages}; integrity_check ${check.integrity}; rows ${check.rowsMatch ? 'same' : `DIFFER ${JSON.stringify(check.rows)}`}`;
}

// ---------------------------------------------------------------------------------------------
// The measurements

type Dist = Distribution;

function dist(values: number[]): Dist {
  return distribution(values, 3);
}

interface PacedResult {
  label: string;
  rate: number;
  seconds: number;
  transactions: number;
  errors: number;
  firstError: string | null;
  achievedRate: number | null;
  latencyMs: Dist;
  /** From the scheduled start to COMMIT returning: what a caller queued behind a slow commit waits. */
  responseMs: Dist;
  lateStarts: number;
  /** Commit -> visible to the reader. */
  visibilityMs: Dist;
  /** Visible - the row's t (taken just before COMMIT). */
  visibilityFromRowTMs: Dist;
  lost: number;
  /** Runs of consecutive transactions that took over StallMs to become visible: when (s into the run, and wall clock), how many, the worst lag. */
  stalls: { atS: number; at: string; transactions: number; maxLagMs: number }[];
  /** Wall clock of the run's first commit. */
  startedAt: string;
  rowsMissingBelowMax: number | null;
  readerPollGapMs: { p50: number; p99: number; max: number } | null;
  readerErrors: number;
  appCpuS: number;
  appRunQueueS: number | null;
  readerCpuS: number | null;
}

/** A CLOCK_MONOTONIC time of the app's, as wall-clock ISO time (to line it up with the nodes' logs). */
function wallOf(result: AppRun, mono: number): string {
  return new Date(result.clockPair.wall + (mono - result.clockPair.mono)).toISOString();
}

async function pacedRun(label: string, app: AppProcess, db: string, readerDb: string, rate: number, seconds: number): Promise<PacedResult> {
  const reader = new ReaderProcess();
  try {
    await reader.watch(readerDb, settings.readerEveryMs);
    const delayBefore = runDelaySeconds(app.pid);
    const result = await app.run(db, 'paced', rate, seconds);
    const delayAfter = runDelaySeconds(app.pid);
    const seen = await reader.finish(result.lastSeq, LostAfterMs);
    const visibleAt = new Map<number, { at: number; t: number }>();
    seen.seqs.forEach((seq, i) => visibleAt.set(seq, { at: seen.visibleAt[i]!, t: seen.t[i]! }));
    const visibility: number[] = [];
    const fromRow: number[] = [];
    const stalls: PacedResult['stalls'] = [];
    const runStart = result.committedAt[0] ?? 0;
    let lost = 0;
    let inStall = false;
    for (let k = 0; k < result.transactions; k++) {
      const seq = result.firstSeq + k;
      const seenAt = visibleAt.get(seq);
      if (!seenAt) {
        // Visible before the reader started (seq <= its baseline) cannot happen: the app starts after.
        lost += 1;
        continue;
      }
      const lag = seenAt.at - result.committedAt[k]!;
      visibility.push(lag);
      fromRow.push(seenAt.at - seenAt.t);
      if (lag > StallMs) {
        if (!inStall) stalls.push({ atS: round((result.committedAt[k]! - runStart) / 1000, 3)!, at: wallOf(result, result.committedAt[k]!), transactions: 0, maxLagMs: 0 });
        const stall = stalls.at(-1)!;
        stall.transactions += 1;
        stall.maxLagMs = Math.max(stall.maxLagMs, round(lag, 1)!);
      }
      inStall = lag > StallMs;
    }
    if (dumpRaw) rawRuns[label] = { firstSeq: result.firstSeq, committedAt: result.committedAt, latencyMs: result.latencyMs, lateMs: result.lateMs, seen };
    const response = result.latencyMs.map((ms, i) => ms + Math.max(0, result.lateMs[i]!));
    return {
      label,
      rate,
      seconds,
      transactions: result.transactions,
      errors: result.errors,
      firstError: result.firstError,
      achievedRate: round(result.transactions / (result.wallMs / 1000), 1),
      latencyMs: dist(result.latencyMs),
      responseMs: dist(response),
      lateStarts: result.lateMs.filter((ms) => ms > 1).length,
      visibilityMs: dist(visibility),
      visibilityFromRowTMs: dist(fromRow),
      lost,
      stalls,
      startedAt: wallOf(result, runStart),
      rowsMissingBelowMax: seen.rowsUpToMax >= 0 ? seen.maxSeq - seen.rowsUpToMax : null,
      readerPollGapMs: { p50: round(seen.gapMs.p50, 3)!, p99: round(seen.gapMs.p99, 3)!, max: round(seen.gapMs.max, 3)! },
      readerErrors: seen.errors,
      appCpuS: round(result.cpuS, 2)!,
      appRunQueueS: delayBefore === null || delayAfter === null ? null : round(delayAfter - delayBefore, 2),
      readerCpuS: round(seen.cpuS, 2),
    };
  } finally {
    reader.kill();
  }
}

interface SaturatedResult {
  label: string;
  seconds: number;
  transactions: number;
  txPerS: number | null;
  errors: number;
  firstError: string | null;
  latencyMs: { p50: number | null; p99: number | null; max: number | null };
  appCpuS: number;
  /** The app's time runnable but waiting for a core. */
  appRunQueueS: number | null;
}

async function saturatedRun(label: string, app: AppProcess, db: string, seconds: number): Promise<SaturatedResult> {
  const delayBefore = runDelaySeconds(app.pid);
  const result = await app.run(db, 'saturate', 0, seconds);
  const delayAfter = runDelaySeconds(app.pid);
  return {
    label,
    seconds,
    transactions: result.transactions,
    txPerS: round(result.transactions / (result.wallMs / 1000), 0),
    errors: result.errors,
    firstError: result.firstError,
    latencyMs: { p50: round(result.summary?.p50, 3), p99: round(result.summary?.p99, 3), max: round(result.summary?.max, 3) },
    appCpuS: round(result.cpuS, 2)!,
    appRunQueueS: delayBefore === null || delayAfter === null ? null : round(delayAfter - delayBefore, 2),
  };
}

interface EngineSide {
  cpuS: number | null;
  cpuPct: number | null;
  /** Time its threads were runnable but waiting for a core. */
  runQueueS: number | null;
  memory: Memory;
}

interface EngineUse {
  wallS: number;
  primary: EngineSide;
  backup: EngineSide;
}

type EngineMark = { cpu: number | null; runQueue: number | null };

function engineMark(node: TestNode): EngineMark {
  return { cpu: cpuSeconds(node.pid), runQueue: runDelaySeconds(node.pid) };
}

function engineUse(primary: TestNode, backup: TestNode, before: { primary: EngineMark; backup: EngineMark }, wallMs: number): EngineUse {
  const side = (node: TestNode, start: EngineMark): EngineSide => {
    const now = engineMark(node);
    const cpuS = now.cpu === null || start.cpu === null ? null : round(now.cpu - start.cpu, 2);
    const runQueueS = now.runQueue === null || start.runQueue === null ? null : round(now.runQueue - start.runQueue, 2);
    return { cpuS, cpuPct: cpuS === null ? null : round((cpuS / (wallMs / 1000)) * 100, 1), runQueueS, memory: memory(node.pid) };
  };
  return { wallS: round(wallMs / 1000, 2)!, primary: side(primary, before.primary), backup: side(backup, before.backup) };
}

interface InitialResult {
  dbBytes: number;
  rows: number;
  generateMs: number;
  rate: number;
  oursMs: number | null;
  oursEventMs: number | null;
  appDuringOurs: { transactions: number; errors: number; latencyMs: Dist } | null;
  anchorIdle: { backupMs: number; cpMs: number; totalMs: number } | null;
  anchorUnderLoad: { finished: boolean; timeoutMs: number; backupMs: number | null; cpMs: number | null; totalMs: number | null } | null;
  vacuumIntoUnderLoad: { vacuumMs: number; cpMs: number; totalMs: number } | null;
  cpuDuringOurs: { primaryS: number | null; backupS: number | null } | null;
  events: Record<string, number>;
  /** The primary's own account of the first full comparison (read, hash, send every page). */
  primarySentMs: number | null;
  /** Why ours did not finish, when it did not. */
  error: string | null;
  check: CopyCheck | null;
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  const engine = engineVersion();
  if (process.platform !== 'linux') throw new Error('bench:sqlite needs Linux (/proc)');
  const sqlite3 = ensureSqlite3();
  const sqlite3Version = (await run(sqlite3, ['--version'])).stdout.trim().split(' ').slice(0, 2).join(' ');
  const probe = new Database(':memory:');
  const libraryVersion = String(probe.prepare('SELECT sqlite_version()').pluck().get());
  probe.close();
  const betterSqlite3Version = (JSON.parse(readFileSync(fileURLToPath(new URL('../../node_modules/better-sqlite3/package.json', import.meta.url)), 'utf8')) as { version: string }).version;
  const versions = { node: process.version, sqlite3Cli: sqlite3Version, sqliteLibrary: libraryVersion, betterSqlite3: betterSqlite3Version };
  log(`engine ${engine}; node ${process.version}; sqlite3 CLI ${sqlite3Version}; SQLite in better-sqlite3 ${betterSqlite3Version}: ${libraryVersion}`);

  const work = mkdtempSync(join(tmpdir(), 'understudy-bench-sqlite-'));
  const cleanups: (() => Promise<void> | void)[] = [() => rmSync(work, { recursive: true, force: true })];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (error) {
        console.error(`cleanup: ${String(error)}`);
      }
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const nodes: TestNode[] = [];

  try {
    // Space: the big database, its WAL, the backup's copy and its WAL, the anchor's two copies.
    const needed = settings.dbMiB * MiB * 6 + 512 * MiB;
    const free = freeBytes(work);
    log(`free space in ${work}: ${(free / 2 ** 30).toFixed(1)} GiB; this run needs about ${(needed / 2 ** 30).toFixed(1)} GiB`);
    if (free < needed) {
      settings.dbMiB = Math.max(16, Math.floor(((free * 0.9 - 512 * MiB) / 6 / MiB)));
      note(`only ${(free / 2 ** 30).toFixed(1)} GiB free: the initial-sync database is scaled down to ${settings.dbMiB} MiB`);
    }
    const dirs = { primary: join(work, 'primary'), backup: join(work, 'backup'), anchor: join(work, 'anchor') };
    for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
    const src = join(dirs.primary, 'app.db');
    const dest = join(dirs.backup, 'app.db');
    const bigSrc = join(dirs.primary, 'big.db');
    const bigDest = join(dirs.backup, 'big.db');

    // ----- the nodes, paired and up
    const [primary, backup] = await Promise.all([TestNode.create('sqlite-a'), TestNode.create('sqlite-b')]);
    nodes.push(primary, backup);
    cleanups.push(() => Promise.all([primary.destroy(), backup.destroy()]).then(() => undefined));
    await Promise.all([primary.serve(), backup.serve()]);
    ownPids.add(primary.pid).add(backup.pid);
    const paired = await pairNodes(primary, backup);
    if (paired.code !== 0) throw new Error(`pair failed: ${paired.stderr}`);
    await waitUntil(
      'both nodes up with the data link connected',
      async () => {
        const [a, b] = await Promise.all([primary.status(), backup.status()]);
        return a.peers[0]?.state === 'up' && b.peers[0]?.state === 'up' && a.peers[0]?.link === 'connected' && b.peers[0]?.link === 'connected' ? true : undefined;
      },
      { timeoutMs: 15_000, everyMs: 50 },
    );
    log(`nodes paired: primary ${primary.address} (pid ${primary.pid}), backup ${backup.address} (pid ${backup.pid})`);

    const app = new AppProcess();
    cleanups.push(() => app.close());
    const accounts = await app.init(src, settings.accounts);
    log(`app (pid ${app.pid}) created ${src} with ${accounts} accounts (WAL, synchronous=NORMAL, busy_timeout=10000)`);

    // ----- 1. OFF: paced (with the reader on SRC), then saturated.
    let off: PacedResult | null = null;
    let on: PacedResult | null = null;
    let satOff: SaturatedResult | null = null;
    let satOn: SaturatedResult | null = null;
    let satOnCatchUpMs: number | null = null;
    let satOnCpu: { primary: number | null; backup: number | null } | null = null;
    let onUse: EngineUse | null = null;
    let onStatus: Awaited<ReturnType<StatusWatch['stop']>> | null = null;
    let onEvents: Record<string, number> = {};
    let satOnEvents: Record<string, number> = {};
    let protectMs: number | null = null;
    let smallCheck: CopyCheck | null = null;
    try {
      checkNoise('OFF paced');
      log(`OFF: ${settings.rate} tx/s for ${settings.seconds} s, reader polling SRC every ${settings.readerEveryMs} ms...`);
      off = await pacedRun('off', app, src, src, settings.rate, settings.seconds);
      log(`OFF: ${off.transactions} tx (${off.achievedRate}/s), commit p50 ${off.latencyMs.p50} ms, p99 ${off.latencyMs.p99} ms, max ${off.latencyMs.max} ms; visible on SRC p99 ${off.visibilityMs.p99} ms`);
    } catch (error) {
      fail('OFF paced run', error);
    }
    try {
      checkNoise('OFF saturated');
      log(`OFF: saturated for ${settings.satSeconds} s...`);
      satOff = await saturatedRun('off', app, src, settings.satSeconds);
      log(`OFF: ${satOff.txPerS} tx/s at saturation (commit p50 ${satOff.latencyMs.p50} ms, p99 ${satOff.latencyMs.p99} ms)`);
    } catch (error) {
      fail('OFF saturated run', error);
    }

    // ----- protect, then ON: paced with the reader on DEST (phase 2 and 4 too), then saturated.
    let objectId: string | null = null;
    try {
      const t0 = performance.now();
      const protect = await primary.cli('protect', 'sqlite', src, '--to', dest);
      if (protect.code !== 0) throw new Error(`protect sqlite exited ${protect.code}: ${protect.stderr.trim()}`);
      objectId = protect.stdout.trim().split('\n').at(-1)!;
      protectMs = Math.round(await waitInSync(primary, objectId, t0, 120_000, 50));
      log(`protected ${src} as ${objectId}: in-sync after ${protectMs} ms (CLI start-up included); settling...`);
      await waitSettled(primary, objectId, 60_000);
    } catch (error) {
      fail('protect sqlite (small database)', error);
    }
    if (objectId) {
      try {
        checkNoise('ON paced');
        const marks = [primary.events.length, backup.events.length];
        const watch = new StatusWatch(primary, objectId);
        const cpuBefore = { primary: engineMark(primary), backup: engineMark(backup) };
        const t0 = performance.now();
        log(`ON: ${settings.rate} tx/s for ${settings.seconds} s, reader polling DEST every ${settings.readerEveryMs} ms...`);
        try {
          on = await pacedRun('on', app, src, dest, settings.rate, settings.seconds);
          // The engine's share over the app's run plus the reader's wait for the last transaction.
          onUse = engineUse(primary, backup, cpuBefore, performance.now() - t0);
        } finally {
          onStatus = await watch.stop();
        }
        onEvents = eventCounts([primary, backup], marks);
        log(`ON: ${on.transactions} tx (${on.achievedRate}/s), commit p50 ${on.latencyMs.p50} ms, p99 ${on.latencyMs.p99} ms, max ${on.latencyMs.max} ms`);
        log(`ON: commit -> visible on DEST p50 ${on.visibilityMs.p50} ms, p99 ${on.visibilityMs.p99} ms, max ${on.visibilityMs.max} ms, lost ${on.lost}; events ${JSON.stringify(onEvents)}`);
        log(`engine during the ON run (${onUse.wallS} s): primary ${onUse.primary.cpuPct}% of a core, VmHWM ${onUse.primary.memory.hwmMiB} MiB; backup ${onUse.backup.cpuPct}%, VmHWM ${onUse.backup.memory.hwmMiB} MiB`);
      } catch (error) {
        fail('ON paced run', error);
      }
      try {
        await waitSettled(primary, objectId, 60_000);
        checkNoise('ON saturated');
        const marks = [primary.events.length, backup.events.length];
        const cpuBefore = { primary: cpuSeconds(primary.pid), backup: cpuSeconds(backup.pid) };
        log(`ON: saturated for ${settings.satSeconds} s...`);
        satOn = await saturatedRun('on', app, src, settings.satSeconds);
        satOnCpu = { primary: round((cpuSeconds(primary.pid) ?? NaN) - (cpuBefore.primary ?? NaN), 2), backup: round((cpuSeconds(backup.pid) ?? NaN) - (cpuBefore.backup ?? NaN), 2) };
        const t0 = performance.now();
        satOnCatchUpMs = Math.round(await waitInSync(primary, objectId, t0, 300_000, 50));
        satOnEvents = eventCounts([primary, backup], marks);
        log(`ON: ${satOn.txPerS} tx/s at saturation (commit p50 ${satOn.latencyMs.p50} ms, p99 ${satOn.latencyMs.p99} ms); in-sync ${satOnCatchUpMs} ms after it stopped; events ${JSON.stringify(satOnEvents)}`);
      } catch (error) {
        fail('ON saturated run', error);
      }
      try {
        await waitSettled(primary, objectId, 120_000);
        smallCheck = checkCopy(src, dest, ['accounts', 'items', 'log']);
        log(`small database copy: ${copyText(smallCheck)}`);
        if (!smallCheck.ok) fail('small database copy', new Error(copyText(smallCheck)));
      } catch (error) {
        fail('small database copy check', error);
      }
    }

    // --repeat: the saturation pair again, after the first pair and its copy check.
    let protectedId = objectId;
    const repeats: { off: number | null; on: number | null; ratio: number | null; onCatchUpMs: number | null; onEvents: Record<string, number> }[] = [];
    for (let round = 2; protectedId && round <= settings.repeat; round++) {
      try {
        await primary.call('object:unprotect', { id: protectedId });
        protectedId = null;
        await sleep(1000);
        checkNoise(`OFF saturated (repeat ${round})`);
        const off = await saturatedRun('off', app, src, settings.satSeconds);
        const protect = await primary.cli('protect', 'sqlite', src, '--to', join(dirs.backup, `app-${round}.db`));
        if (protect.code !== 0) throw new Error(`protect sqlite exited ${protect.code}: ${protect.stderr.trim()}`);
        protectedId = protect.stdout.trim().split('\n').at(-1)!;
        await waitInSync(primary, protectedId, performance.now(), 120_000, 50);
        await waitSettled(primary, protectedId, 60_000);
        checkNoise(`ON saturated (repeat ${round})`);
        const marks = [primary.events.length, backup.events.length];
        const onRun = await saturatedRun('on', app, src, settings.satSeconds);
        const t0 = performance.now();
        const onCatchUpMs = Math.round(await waitInSync(primary, protectedId, t0, 300_000, 50));
        const onEvents = eventCounts([primary, backup], marks);
        const pair = { off: off.txPerS, on: onRun.txPerS, ratio: ratio(onRun.txPerS, off.txPerS), onCatchUpMs, onEvents };
        repeats.push(pair);
        log(`repeat ${round}: OFF ${pair.off} tx/s, ON ${pair.on} tx/s, ratio ${pair.ratio}; in-sync ${onCatchUpMs} ms after it stopped; events ${JSON.stringify(onEvents)}`);
        await waitSettled(primary, protectedId, 120_000);
      } catch (error) {
        fail(`saturation pair (repeat ${round})`, error);
      }
    }

    // The small database's object is unprotected before phase 3, so that the initial sync is
    // measured alone (its WAL file, grown by the saturated burst, would otherwise be resynced
    // whenever the big transfer backs the link up; see the report).
    if (protectedId) {
      try {
        await primary.call('object:unprotect', { id: protectedId });
      } catch (error) {
        note(`could not unprotect the small database before phase 3: ${String(error)}`);
      }
    }

    // ----- 3. Initial sync of the big database while the app writes.
    const initial: InitialResult = {
      dbBytes: 0,
      rows: 0,
      generateMs: 0,
      rate: settings.initialRate,
      oursMs: null,
      oursEventMs: null,
      appDuringOurs: null,
      anchorIdle: null,
      anchorUnderLoad: null,
      vacuumIntoUnderLoad: null,
      cpuDuringOurs: null,
      events: {},
      primarySentMs: null,
      error: null,
      check: null,
    };
    try {
      log(`generating a ${settings.dbMiB} MiB database...`);
      const generated = generateBigDatabase(bigSrc, settings.dbMiB);
      await app.init(bigSrc, settings.accounts);
      initial.dbBytes = statSync(bigSrc).size;
      initial.rows = generated.rows;
      initial.generateMs = Math.round(generated.ms);
      log(`generated ${(initial.dbBytes / MiB).toFixed(0)} MiB (${generated.rows} blobs) in ${(generated.ms / 1000).toFixed(1)} s`);

      // Anchor with the app paused: .backup, then cp of the result.
      const backupCopy = join(dirs.anchor, 'x.db');
      const cpCopy = join(dirs.anchor, 'y.db');
      const anchor = async (timeoutMs: number) => {
        rmSync(backupCopy, { force: true });
        rmSync(cpCopy, { force: true });
        const b = await run(sqlite3, [bigSrc, `.backup ${backupCopy}`], timeoutMs);
        if (b.timedOut) return { finished: false, backupMs: Math.round(b.ms), cpMs: null };
        if (b.code !== 0) throw new Error(`sqlite3 .backup exited ${b.code}: ${b.stderr.trim()}`);
        const c = await run('cp', [backupCopy, cpCopy]);
        if (c.code !== 0) throw new Error(`cp exited ${c.code}: ${c.stderr.trim()}`);
        return { finished: true, backupMs: Math.round(b.ms), cpMs: Math.round(c.ms) };
      };
      try {
        checkNoise('anchor: .backup + cp (app paused)');
        log('anchor: sqlite3 SRC ".backup X" + cp X Y, app paused...');
        const idle = await anchor(30 * 60_000);
        initial.anchorIdle = { backupMs: idle.backupMs, cpMs: idle.cpMs!, totalMs: idle.backupMs + idle.cpMs! };
        log(`anchor (app paused): .backup ${idle.backupMs} ms + cp ${idle.cpMs} ms = ${initial.anchorIdle.totalMs} ms`);
      } catch (error) {
        fail('anchor: sqlite3 .backup + cp', error);
      }

      const loadRun = app.run(bigSrc, 'paced', settings.initialRate, 0);
      let loadStopped = false;
      const stopLoad = async () => {
        if (loadStopped) return loadRun;
        loadStopped = true;
        app.stop();
        return loadRun;
      };
      try {
        await sleep(500);
        // Context: the same anchor under the app's writes (bounded), and VACUUM INTO + cp.
        try {
          const timeoutMs = Math.min(120_000, Math.max(15_000, (initial.anchorIdle?.backupMs ?? 6000) * 10));
          checkNoise('anchor: .backup + cp under load');
          log(`context: sqlite3 .backup under ${settings.initialRate} tx/s (given up after ${Math.round(timeoutMs / 1000)} s)...`);
          const loaded = await anchor(timeoutMs);
          initial.anchorUnderLoad = { finished: loaded.finished, timeoutMs, backupMs: loaded.finished ? loaded.backupMs : null, cpMs: loaded.cpMs, totalMs: loaded.finished ? loaded.backupMs + loaded.cpMs! : null };
          log(loaded.finished ? `.backup under load: ${loaded.backupMs} ms + cp ${loaded.cpMs} ms` : `.backup under load did not finish in ${Math.round(timeoutMs / 1000)} s`);
          rmSync(backupCopy, { force: true });
          rmSync(cpCopy, { force: true });
          checkNoise('anchor: VACUUM INTO + cp under load');
          const v = await run(sqlite3, [bigSrc, `VACUUM INTO '${backupCopy}'`]);
          if (v.code !== 0) throw new Error(`VACUUM INTO exited ${v.code}: ${v.stderr.trim()}`);
          const c = await run('cp', [backupCopy, cpCopy]);
          if (c.code !== 0) throw new Error(`cp exited ${c.code}: ${c.stderr.trim()}`);
          initial.vacuumIntoUnderLoad = { vacuumMs: Math.round(v.ms), cpMs: Math.round(c.ms), totalMs: Math.round(v.ms + c.ms) };
          log(`VACUUM INTO under load: ${Math.round(v.ms)} ms + cp ${Math.round(c.ms)} ms`);
        } catch (error) {
          fail('anchor under load (context)', error);
        }
        rmSync(backupCopy, { force: true });
        rmSync(cpCopy, { force: true });

        // Ours: protect (the control call) -> the primary's status says in-sync.
        checkNoise('initial sync: Understudy');
        const marks = [primary.events.length, backup.events.length];
        const cpuBefore = { primary: cpuSeconds(primary.pid), backup: cpuSeconds(backup.pid) };
        log(`protect ${bigSrc} while the app writes ${settings.initialRate} tx/s; polling the primary's status every ${settings.pollMs} ms...`);
        const t0 = performance.now();
        const status = await primary.call('object:protect', { kind: 'sqlite', source: bigSrc, target: bigDest });
        const timeoutMs = 120_000 + (initial.dbBytes / (2 * MiB)) * 1000;
        try {
          initial.oursMs = Math.round(await waitInSync(primary, status.id, t0, timeoutMs, settings.pollMs, backup));
        } catch (error) {
          initial.error = error instanceof Error ? error.message : String(error);
          throw error;
        }
        const cpuAfter = { primary: cpuSeconds(primary.pid), backup: cpuSeconds(backup.pid) };
        initial.cpuDuringOurs = {
          primaryS: cpuAfter.primary === null || cpuBefore.primary === null ? null : round(cpuAfter.primary - cpuBefore.primary, 2),
          backupS: cpuAfter.backup === null || cpuBefore.backup === null ? null : round(cpuAfter.backup - cpuBefore.backup, 2),
        };
        const event = primary.events.slice(marks[0]).find((e) => e.type === 'sqlite.in-sync' && e.object === status.id);
        initial.oursEventMs = typeof event?.ms === 'number' ? event.ms : null;
        log(`ours: in-sync after ${(initial.oursMs / 1000).toFixed(2)} s (its sqlite.in-sync event says ${initial.oursEventMs ?? '?'} ms)`);
        const during = await stopLoad();
        initial.appDuringOurs = { transactions: during.transactions, errors: during.errors, latencyMs: dist(during.latencyMs) };
        await waitSettled(primary, status.id, 120_000);
        initial.events = eventCounts([primary, backup], marks);
        initial.primarySentMs = resyncsSent(primary, status.id).find((r) => r.reason === 'the backup connected')?.ms ?? null;
        log(`app stopped after ${during.transactions} tx at ${settings.initialRate}/s (commit p99 ${initial.appDuringOurs.latencyMs.p99} ms, max ${initial.appDuringOurs.latencyMs.max} ms); backup settled; comparing...`);
        initial.check = checkCopy(bigSrc, bigDest, ['blobs', 'accounts', 'items', 'log']);
        log(`big database copy: ${copyText(initial.check)} (${initial.check.pages?.ms ?? '?'} ms to compare)`);
        if (!initial.check.ok) fail('big database copy', new Error(copyText(initial.check)));
      } catch (error) {
        fail('initial sync: Understudy', error);
      } finally {
        await stopLoad().catch(() => undefined);
      }
    } catch (error) {
      fail('initial sync', error);
    }

    const endMemory = { primary: memory(primary.pid), backup: memory(backup.pid) };
    const onEnd = on ? new Date(Date.parse(on.startedAt) + settings.seconds * 1000 + 2000).toISOString() : '';
    const onResyncs = on && objectId ? resyncsSent(primary, objectId).filter((r) => r.at >= on!.startedAt && r.at <= onEnd) : [];
    const diagnostics = failures.length > 0 ? `${nodeDiagnostics(primary, SqliteEvents)}\n\n${nodeDiagnostics(backup, SqliteEvents)}` : null;

    // ----- report
    const totalMs = Date.now() - startedAt;
    const ms = (value: number | null | undefined) => (value === null || value === undefined ? 'FAILED' : `${value} ms`);
    const s = (value: number | null | undefined) => (value === null || value === undefined ? 'FAILED' : `${(value / 1000).toFixed(2)} s`);
    const verdict = (value: number | null, goal: number, atMost = true) => (value === null ? 'FAILED' : (atMost ? value <= goal : value >= goal) ? 'met' : 'missed');
    const p99Ratio = ratio(on?.latencyMs.p99 ?? null, off?.latencyMs.p99 ?? null);
    const p50Ratio = ratio(on?.latencyMs.p50 ?? null, off?.latencyMs.p50 ?? null);
    const satRatio = ratio(satOn?.txPerS ?? null, satOff?.txPerS ?? null);
    const pairRatios = [satRatio, ...repeats.map((r) => r.ratio)].filter((r): r is number => r !== null);
    const sortedRatios = [...pairRatios].sort((a, b) => a - b);
    const medianRatio = sortedRatios.length === 0 ? null : round(sortedRatios.length % 2 === 1 ? sortedRatios[(sortedRatios.length - 1) / 2]! : (sortedRatios[sortedRatios.length / 2 - 1]! + sortedRatios[sortedRatios.length / 2]!) / 2, 3);
    const initialRatio = ratio(initial.oursMs, initial.anchorIdle?.totalMs ?? null);
    const lagP99 = on?.visibilityMs.p99 ?? null;
    const mem = (m: Memory | undefined) => (m ? `${m.hwmMiB ?? '?'} / ${m.rssMiB ?? '?'} MiB` : '?');
    const rows: Record<string, string | number>[] = [
      {
        measure: `commit latency p50 at ${settings.rate} tx/s (${settings.seconds} s)`,
        ours: on ? `${on.latencyMs.p50} ms (ON)` : 'FAILED',
        anchor: off ? `${off.latencyMs.p50} ms (OFF)` : 'FAILED',
        ratio: p50Ratio ?? '',
        goal: '(context)',
        result: '',
      },
      {
        measure: 'commit latency p99',
        ours: on ? `${on.latencyMs.p99} ms (max ${on.latencyMs.max})` : 'FAILED',
        anchor: off ? `${off.latencyMs.p99} ms (max ${off.latencyMs.max})` : 'FAILED',
        ratio: p99Ratio ?? '',
        goal: `<= ${Goals.latencyP99Ratio}`,
        result: on && on.errors > 0 ? 'FAILED' : verdict(p99Ratio, Goals.latencyP99Ratio),
      },
      {
        measure: `write throughput at saturation (${settings.satSeconds} s)`,
        ours: satOn ? `${satOn.txPerS} tx/s (ON)` : 'FAILED',
        anchor: satOff ? `${satOff.txPerS} tx/s (OFF)` : 'FAILED',
        ratio: satRatio ?? '',
        goal: `>= ${Goals.throughputRatio}`,
        result: verdict(satRatio, Goals.throughputRatio, false),
      },
      ...(repeats.length > 0
        ? [
            {
              measure: `  context: the pair run ${pairRatios.length} times (--repeat)`,
              ours: `ratios ${pairRatios.join(', ')}`,
              anchor: `ON ${[satOn?.txPerS, ...repeats.map((r) => r.on)].join(', ')} / OFF ${[satOff?.txPerS, ...repeats.map((r) => r.off)].join(', ')}`,
              ratio: medianRatio ?? '',
              goal: '(median)',
              result: '',
            },
          ]
        : []),
      {
        measure: `  context: in-sync again after the ON burst`,
        ours: ms(satOnCatchUpMs),
        anchor: '',
        ratio: '',
        goal: '(context)',
        result: '',
      },
      {
        measure: `lag commit -> readable on backup p50 (${settings.rate} tx/s)`,
        ours: on ? `${on.visibilityMs.p50} ms` : 'FAILED',
        anchor: `Litestream sync-interval default ${LitestreamSyncIntervalS} s (not measured)`,
        ratio: '',
        goal: '(context)',
        result: '',
      },
      {
        measure: 'lag p99',
        ours: on ? `${on.visibilityMs.p99} ms (max ${on.visibilityMs.max}, lost ${on.lost})` : 'FAILED',
        anchor: '',
        ratio: '',
        goal: `<= ${Goals.lagP99Ms} ms`,
        result: on === null || on.lost > 0 || (on.rowsMissingBelowMax ?? 0) > 0 ? 'FAILED' : verdict(lagP99, Goals.lagP99Ms),
      },
      {
        measure: `initial sync ${(initial.dbBytes / MiB).toFixed(0)} MiB, app at ${settings.initialRate} tx/s`,
        ours: initial.oursMs === null && initial.error ? `FAILED (${/SQLITE_\w+/.exec(initial.error)?.[0] ?? 'see below'})` : `${s(initial.oursMs)}${initial.check && !initial.check.ok ? ' BAD COPY' : ''}`,
        anchor: initial.anchorIdle ? `.backup + cp ${s(initial.anchorIdle.totalMs)} (app paused)` : 'FAILED',
        ratio: initialRatio ?? '',
        goal: '(context)',
        result: initial.check && !initial.check.ok ? 'FAILED' : '',
      },
      {
        measure: '  anchors under the same load',
        ours: '',
        anchor: `.backup: ${initial.anchorUnderLoad ? (initial.anchorUnderLoad.finished ? s(initial.anchorUnderLoad.totalMs) : `unfinished after ${s(initial.anchorUnderLoad.timeoutMs)}`) : 'FAILED'}; VACUUM INTO + cp: ${initial.vacuumIntoUnderLoad ? s(initial.vacuumIntoUnderLoad.totalMs) : 'FAILED'}`,
        ratio: ratio(initial.oursMs, initial.vacuumIntoUnderLoad?.totalMs ?? null) ?? '',
        goal: '(context)',
        result: '',
      },
      {
        measure: '  copy after the app stopped',
        ours: copyText(initial.check),
        anchor: '',
        ratio: '',
        goal: 'page-identical, or integrity ok + same rows',
        result: initial.check ? (initial.check.ok ? (initial.check.pages?.identical ? 'met' : 'met (integrity, rows)') : 'FAILED') : 'FAILED',
      },
      {
        measure: 'engine CPU during the ON paced run (% of one core)',
        ours: onUse ? `primary ${onUse.primary.cpuPct}%, backup ${onUse.backup.cpuPct}%` : 'FAILED',
        anchor: on ? `app ${round((on.appCpuS / (onUse?.wallS ?? 1)) * 100, 1)}%, reader ${round(((on.readerCpuS ?? 0) / (onUse?.wallS ?? 1)) * 100, 1)}%` : '',
        ratio: '',
        goal: '(context)',
        result: '',
      },
      {
        measure: 'engine memory after the ON paced run (VmHWM / VmRSS)',
        ours: onUse ? `primary ${mem(onUse.primary.memory)}, backup ${mem(onUse.backup.memory)}` : 'FAILED',
        anchor: `at the end: primary ${mem(endMemory.primary)}, backup ${mem(endMemory.backup)}`,
        ratio: '',
        goal: '(context)',
        result: '',
      },
    ];
    console.log('');
    printTable(rows);
    console.log('');
    if (off && on) {
      console.log(
        `detail: OFF ${off.transactions} tx at ${off.achievedRate}/s, ON ${on.transactions} tx at ${on.achievedRate}/s; response from the scheduled start p99 OFF ${off.responseMs.p99} ms, ON ${on.responseMs.p99} ms (late starts > 1 ms: ${off.lateStarts} / ${on.lateStarts}); errors ${off.errors} / ${on.errors}; app waiting for a core OFF ${off.appRunQueueS} s, ON ${on.appRunQueueS} s`,
      );
      console.log(
        `detail: reader poll gap p50 ${on.readerPollGapMs?.p50} ms, p99 ${on.readerPollGapMs?.p99} ms, max ${on.readerPollGapMs?.max} ms; visible on SRC itself (OFF run) p50 ${off.visibilityMs.p50} ms, p99 ${off.visibilityMs.p99} ms; lag measured from the row's t (just before COMMIT) p99 ${on.visibilityFromRowTMs.p99} ms; rows missing below the largest seen seq: ${on.rowsMissingBelowMax}`,
      );
    }
    if (on) console.log(`detail: stalls (runs of transactions visible > ${StallMs} ms after commit) in the ON run: ${on.stalls.length}${on.stalls.length > 0 ? `: ${on.stalls.slice(0, 12).map((x) => `at ${x.atS} s (${x.at.slice(11, 23)}) ${x.transactions} tx up to ${x.maxLagMs} ms`).join('; ')}` : ''}`);
    if (onUse && on) {
      console.log(
        `detail: waiting for a core (run queue) during the ON run (${onUse.wallS} s): primary ${onUse.primary.runQueueS} s, backup ${onUse.backup.runQueueS} s, app ${on.appRunQueueS} s; load average at its start ${machineNoise.find((n) => n.run === 'ON paced')?.loadavg1 ?? '?'}`,
      );
    }
    if (onResyncs.length > 0) console.log(`detail: the primary's resyncs of the small database during the ON run: ${onResyncs.map((r) => `${r.at.slice(11, 23)} (${r.reason}, ${r.differing} pages sent, ${r.ms} ms)`).join('; ')}`);
    if (onStatus) console.log(`detail: primary status during the ON run (every 250 ms): max lagMs ${onStatus.maxLagMs}, max pending ${onStatus.maxPending}, states ${JSON.stringify(onStatus.states)}; events ${JSON.stringify(onEvents)}`);
    if (satOn) {
      console.log(
        `detail: saturated ON commit p50 ${satOn.latencyMs.p50} ms, p99 ${satOn.latencyMs.p99} ms, max ${satOn.latencyMs.max} ms (OFF ${satOff?.latencyMs.p50} / ${satOff?.latencyMs.p99} / ${satOff?.latencyMs.max}); ` +
          `app CPU ON ${satOn.appCpuS} s, OFF ${satOff?.appCpuS ?? '?'} s, app waiting for a core (run queue) ON ${satOn.appRunQueueS ?? '?'} s, OFF ${satOff?.appRunQueueS ?? '?'} s, over ${settings.satSeconds} s; engine CPU during the ON burst primary ${satOnCpu?.primary ?? '?'} s, backup ${satOnCpu?.backup ?? '?'} s; events ${JSON.stringify(satOnEvents)}`,
      );
    }
    if (initial.appDuringOurs) console.log(`detail: app during our initial sync: ${initial.appDuringOurs.transactions} tx, commit p50 ${initial.appDuringOurs.latencyMs.p50} ms, p99 ${initial.appDuringOurs.latencyMs.p99} ms, max ${initial.appDuringOurs.latencyMs.max} ms, errors ${initial.appDuringOurs.errors}; engine CPU primary ${initial.cpuDuringOurs?.primaryS} s, backup ${initial.cpuDuringOurs?.backupS} s; sqlite.in-sync event ${initial.oursEventMs} ms; the primary's log: every page read, hashed and sent in ${initial.primarySentMs ?? '?'} ms; events ${JSON.stringify(initial.events)}`);
    if (initial.anchorIdle) console.log(`detail: anchor (app paused) .backup ${initial.anchorIdle.backupMs} ms + cp ${initial.anchorIdle.cpMs} ms; protect of the small database -> in-sync ${protectMs} ms (CLI included)`);
    if (smallCheck) console.log(`detail: small database copy: ${copyText(smallCheck)}`);
    console.log(`context: Litestream's default sync-interval is ${LitestreamSyncIntervalS} s (WAL shipped to the replica once a second), not measured here`);
    console.log(`total run time ${(totalMs / 1000).toFixed(0)} s; engine ${engine}; ${JSON.stringify(versions)}`);
    for (const text of notes) console.log(`note: ${text}`);

    const path = writeResults('sqlite', {
      date: new Date().toISOString(),
      settings,
      engine,
      versions,
      goals: Goals,
      commitLatency: { off, on, p50Ratio, p99Ratio, goal: `p99(on) <= ${Goals.latencyP99Ratio} x p99(off)` },
      saturation: { off: satOff, on: satOn, ratio: satRatio, engineCpuDuringOnS: satOnCpu, onCatchUpMs: satOnCatchUpMs, onEvents: satOnEvents, goal: `on / off >= ${Goals.throughputRatio}`, repeats, pairRatios, medianRatio },
      lag: {
        p50Ms: on?.visibilityMs.p50 ?? null,
        p99Ms: lagP99,
        maxMs: on?.visibilityMs.max ?? null,
        lost: on?.lost ?? null,
        rowsMissingBelowMax: on?.rowsMissingBelowMax ?? null,
        goal: `p99 <= ${Goals.lagP99Ms} ms`,
        context: { litestreamDefaultSyncIntervalS: LitestreamSyncIntervalS, measured: false },
        primaryStatus: onStatus,
        events: onEvents,
        resyncs: onResyncs,
      },
      initialSync: { ...initial, ratioToBackupAndCp: initialRatio, protectSmallMs: protectMs, smallCheck },
      engineUse: { duringOnPaced: onUse, atEnd: endMemory },
      machineNoise,
      totalMs,
      notes,
      failures,
      diagnostics,
    });
    console.log(`\nwrote ${path}`);
    if (dumpRaw) console.log(`wrote ${writeResults('sqlite-raw', rawRuns)}`);
    if (failures.length > 0) {
      console.error(`\n!!! ${failures.length} FAILURE(S):\n${failures.map((f) => `  - ${f}`).join('\n')}\n\n${diagnostics ?? ''}`);
      process.exitCode = 1;
    }
  } catch (error) {
    for (const node of nodes) console.error(`\n${nodeDiagnostics(node, SqliteEvents)}`);
    throw error;
  } finally {
    await cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`bench:sqlite: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  if (failures.length > 0) console.error(`earlier failures:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  process.exitCode = 1;
});
