/**
 * The "application" of bench/sqlite.ts, in its own process (forked, driven over IPC): small
 * transactions on a WAL database opened the way a typical app opens it — `journal_mode=WAL`,
 * `synchronous=NORMAL`, `busy_timeout=10000`, SQLite's default autocheckpoint (1000 pages).
 *
 * One transaction = 2 inserts into `items` (with an index on `account`), 2 updates of random
 * rows of `accounts`, and, as its last statement, the insert of its sequence number and its
 * time into `log` (`t`: CLOCK_MONOTONIC in ms, taken just before COMMIT). Time is read with
 * process.hrtime (CLOCK_MONOTONIC), which every process on the machine shares exactly, so the
 * reader process can subtract it from its own clock.
 *
 * Jobs (IPC messages):
 *   { op: 'init', db, accounts }          creates the schema and `accounts` rows (WAL mode)
 *   { op: 'run', db, mode: 'paced', rate, seconds }
 *       transaction i is started at start + i / rate (sleeping with Atomics.wait, no spinning);
 *       a transaction that starts late (the previous one was slow) starts at once, so the
 *       schedule catches up. seconds = 0: until { op: 'stop' }.
 *   { op: 'run', db, mode: 'saturate', seconds }  back-to-back transactions
 *   { op: 'stop' }                        ends a running job early
 *   { op: 'close' }                       closes the connections and exits
 * Each run answers { op: 'done', ... } with the commit latencies (ms: from the start of the
 * transaction to COMMIT returning), how late each one started, and when each commit returned.
 * Connections stay open between jobs: closing the last connection of a WAL database
 * checkpoints and deletes the WAL, which the app would not do in the middle of its life.
 */
import Database from 'better-sqlite3';
import { performance } from 'node:perf_hooks';

export type AppJob =
  | { op: 'init'; db: string; accounts: number }
  | { op: 'run'; db: string; mode: 'paced' | 'saturate'; rate: number; seconds: number }
  | { op: 'stop' }
  | { op: 'close' };

export interface AppRun {
  op: 'done';
  mode: 'paced' | 'saturate';
  /** The first and last sequence numbers this run wrote (firstSeq > lastSeq: none). */
  firstSeq: number;
  lastSeq: number;
  transactions: number;
  errors: number;
  firstError: string | null;
  wallMs: number;
  /** Per transaction, in order (paced runs only; saturated runs send summaries). */
  latencyMs: number[];
  lateMs: number[];
  /** CLOCK_MONOTONIC ms when COMMIT returned. */
  committedAt: number[];
  /** Saturated runs: latency percentiles computed here (the arrays would be large). */
  summary: { p50: number; p99: number; max: number } | null;
  /** CPU seconds (user + system) of this process during the run. */
  cpuS: number;
  /** CLOCK_MONOTONIC ms and wall-clock ms read together at the start: maps run times to log times. */
  clockPair: { mono: number; wall: number };
}

export type AppReply = AppRun | { op: 'ready'; db: string; rows: number } | { op: 'error'; message: string };

/** CLOCK_MONOTONIC in milliseconds, comparable across processes on this machine. */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** Sleeps the thread (no spinning) for ms, which may be fractional. */
function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}

function yieldToLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

const connections = new Map<string, Database.Database>();
let stopRequested = false;

function open(path: string): Database.Database {
  let db = connections.get(path);
  if (db) return db;
  db = new Database(path, { timeout: 10_000 });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 10000');
  connections.set(path, db);
  return db;
}

function init(path: string, accounts: number): number {
  const db = open(path);
  db.exec(`
    CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL, updated REAL);
    CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, account INTEGER NOT NULL, amount INTEGER NOT NULL, note TEXT, at REAL);
    CREATE INDEX IF NOT EXISTS items_account ON items(account);
    CREATE TABLE IF NOT EXISTS log(seq INTEGER PRIMARY KEY, t REAL NOT NULL);
  `);
  const have = Number(db.prepare('SELECT count(*) FROM accounts').pluck().get());
  const insert = db.prepare('INSERT INTO accounts(id, name, balance, updated) VALUES (?, ?, 0, 0)');
  db.transaction(() => {
    for (let id = have + 1; id <= accounts; id++) insert.run(id, `account ${id} ${'x'.repeat(20)}`);
  })();
  return Number(db.prepare('SELECT count(*) FROM accounts').pluck().get());
}

function percentileOf(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

async function run(job: Extract<AppJob, { op: 'run' }>): Promise<AppRun> {
  const db = open(job.db);
  const accounts = Math.max(1, Number(db.prepare('SELECT count(*) FROM accounts').pluck().get()));
  const insertItem = db.prepare('INSERT INTO items(account, amount, note, at) VALUES (?, ?, ?, ?)');
  const update = db.prepare('UPDATE accounts SET balance = balance + ?, updated = ? WHERE id = ?');
  const insertLog = db.prepare('INSERT INTO log(seq, t) VALUES (?, ?)');
  const note = (n: number) => `order ${n} ${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`.padEnd(80, '.');
  const transaction = db.transaction((seq: number) => {
    const a = 1 + Math.floor(Math.random() * accounts);
    const b = 1 + Math.floor(Math.random() * accounts);
    const amount = 1 + Math.floor(Math.random() * 1000);
    const now = Date.now();
    insertItem.run(a, amount, note(seq), now);
    insertItem.run(b, -amount, note(seq), now);
    update.run(amount, now, a);
    update.run(-amount, now, b);
    insertLog.run(seq, monoMs());
  });

  const firstSeq = Number(db.prepare('SELECT coalesce(max(seq), 0) FROM log').pluck().get()) + 1;
  const paced = job.mode === 'paced';
  const capacity = paced ? Math.ceil(job.rate * (job.seconds > 0 ? job.seconds : 3600)) + 16 : 0;
  const latencyMs: number[] = [];
  const lateMs: number[] = [];
  const committedAt: number[] = [];
  let satLatencies = new Float64Array(paced ? 0 : 1 << 20);
  let errors = 0;
  let firstError: string | null = null;
  let seq = firstSeq;
  let done = 0;
  stopRequested = false;
  const cpuBefore = cpuSeconds();
  const clockPair = { mono: monoMs(), wall: Date.now() };
  const start = performance.now();
  const end = job.seconds > 0 ? start + job.seconds * 1000 : Infinity;
  const interval = paced ? 1000 / job.rate : 0;
  for (let i = 0; ; i++) {
    if (stopRequested) break;
    if (paced) {
      if (i >= capacity) break;
      const due = start + i * interval;
      if (due >= end) break;
      sleepSync(due - performance.now());
      const t0 = performance.now();
      try {
        transaction(seq);
        const t1 = performance.now();
        latencyMs.push(t1 - t0);
        lateMs.push(t0 - due);
        committedAt.push(monoMs());
        seq += 1;
        done += 1;
      } catch (error) {
        errors += 1;
        firstError ??= String(error);
      }
      // Lets a 'stop' message in; takes microseconds.
      if (job.seconds === 0 || i % 50 === 0) await yieldToLoop();
    } else {
      const t0 = performance.now();
      if (t0 >= end) break;
      try {
        transaction(seq);
        if (done >= satLatencies.length) {
          const bigger = new Float64Array(satLatencies.length * 2);
          bigger.set(satLatencies);
          satLatencies = bigger;
        }
        satLatencies[done] = performance.now() - t0;
        seq += 1;
        done += 1;
      } catch (error) {
        errors += 1;
        firstError ??= String(error);
      }
      if (i % 200 === 0) await yieldToLoop();
    }
  }
  const wallMs = performance.now() - start;
  let summary: AppRun['summary'] = null;
  if (!paced) {
    const sorted = satLatencies.slice(0, done).sort();
    summary = { p50: percentileOf(sorted, 0.5), p99: percentileOf(sorted, 0.99), max: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN };
  }
  return { op: 'done', mode: job.mode, firstSeq, lastSeq: seq - 1, transactions: done, errors, firstError, wallMs, latencyMs, lateMs, committedAt, summary, cpuS: cpuSeconds() - cpuBefore, clockPair };
}

function reply(message: AppReply): void {
  process.send!(message);
}

let busy: Promise<void> = Promise.resolve();

process.on('message', (job: AppJob) => {
  if (job.op === 'stop') {
    stopRequested = true;
    return;
  }
  busy = busy.then(async () => {
    try {
      switch (job.op) {
        case 'init':
          reply({ op: 'ready', db: job.db, rows: init(job.db, job.accounts) });
          return;
        case 'run':
          reply(await run(job));
          return;
        case 'close':
          for (const db of connections.values()) db.close();
          connections.clear();
          process.disconnect();
          return;
      }
    } catch (error) {
      reply({ op: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
    }
  });
});

if (!process.send) {
  console.error('sqlite-app.js is driven by bench/sqlite.ts over IPC (child_process.fork)');
  process.exit(2);
}
