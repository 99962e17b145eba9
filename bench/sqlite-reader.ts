/**
 * The reader of bench/sqlite.ts, in its own process (forked, driven over IPC): polls a
 * database read-only about every `everyMs` (default 1 ms: Atomics.wait, then one turn of the
 * event loop so IPC gets in) with `SELECT seq, t FROM log WHERE seq > last ORDER BY seq`, and
 * records for every sequence number newly visible the moment it was seen (CLOCK_MONOTONIC ms,
 * the clock the app stamps its commits with). Every row that appears between two polls became
 * visible at the second one: the poll period bounds the error (at most ~1 ms, ~0.5 ms mean).
 *
 * Jobs: { op: 'watch', db, everyMs } — waits until the database exists and has the `log`
 *         table, answers { op: 'watching', baseline } (the largest seq visible at the start),
 *         then polls;
 *       { op: 'finish', lastSeq, graceMs } — keeps polling until lastSeq is visible or graceMs
 *         passed, then answers { op: 'seen', ... } and exits.
 * A connection that fails (the copy was moved aside and reopened, say) is reopened; failures
 * are counted.
 */
import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';

export type ReaderJob = { op: 'watch'; db: string; everyMs: number } | { op: 'finish'; lastSeq: number; graceMs: number };

export interface ReaderSeen {
  op: 'seen';
  baseline: number;
  /** seqs[i] became visible at visibleAt[i] (CLOCK_MONOTONIC ms); its row's t is t[i]. */
  seqs: number[];
  visibleAt: number[];
  t: number[];
  polls: number;
  /** Poll-to-poll gaps (ms): p50, p99, max. */
  gapMs: { p50: number; p99: number; max: number };
  errors: number;
  firstError: string | null;
  /** Rows with seq <= the largest seen, counted at the end: fewer than expected means gaps. */
  rowsUpToMax: number;
  maxSeq: number;
  cpuS: number;
}

export type ReaderReply = { op: 'watching'; baseline: number } | ReaderSeen | { op: 'error'; message: string };

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** CLOCK_MONOTONIC in milliseconds: the clock the app stamps its commits with. */
function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function reply(message: ReaderReply, then?: () => void): void {
  process.send!(message, undefined, {}, () => then?.());
}

/** Disconnects once the last message is written: a large one sent just before disconnect() can be lost. */
function replyAndLeave(message: ReaderReply): void {
  reply(message, () => process.disconnect());
}

let finish: { lastSeq: number; deadline: number } | null = null;

async function watch(path: string, everyMs: number): Promise<void> {
  const conn: { db: Database.Database | null; query: Database.Statement | null } = { db: null, query: null };
  let errors = 0;
  let firstError: string | null = null;
  const connect = () => {
    try {
      conn.db?.close();
    } catch {
      // already gone
    }
    conn.db = null;
    conn.query = null;
    if (!existsSync(path)) return false;
    const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 1000 });
    try {
      conn.query = db.prepare('SELECT seq, t FROM log WHERE seq > ? ORDER BY seq');
    } catch (error) {
      db.close();
      throw error;
    }
    conn.db = db;
    return true;
  };
  // The copy appears on the backup with the first full transaction.
  const waitUntil = monoMs() + 120_000;
  for (;;) {
    try {
      if (connect()) break;
    } catch (error) {
      firstError ??= String(error);
    }
    if (monoMs() > waitUntil) throw new Error(`${path} never became readable: ${firstError ?? 'missing'}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const maxOf = () => Number(conn.db!.prepare('SELECT coalesce(max(seq), 0) FROM log').pluck().get());
  const baseline = maxOf();
  reply({ op: 'watching', baseline });
  const cpuBefore = process.cpuUsage();
  const seqs: number[] = [];
  const visibleAt: number[] = [];
  const t: number[] = [];
  const gaps: number[] = [];
  let last = baseline;
  let polls = 0;
  let previous = monoMs();
  for (;;) {
    const now = monoMs();
    gaps.push(now - previous);
    previous = now;
    polls += 1;
    try {
      if (!conn.query) connect();
      const rows = conn.query ? (conn.query.all(last) as { seq: number; t: number }[]) : [];
      if (rows.length > 0) {
        const at = monoMs();
        for (const row of rows) {
          seqs.push(row.seq);
          visibleAt.push(at);
          t.push(row.t);
        }
        last = rows[rows.length - 1]!.seq;
      }
    } catch (error) {
      errors += 1;
      firstError ??= String(error);
      conn.query = null;
    }
    if (finish && (last >= finish.lastSeq || monoMs() > finish.deadline)) break;
    Atomics.wait(sleeper, 0, 0, everyMs);
    await new Promise((resolve) => setImmediate(resolve));
  }
  let rowsUpToMax = -1;
  try {
    if (!conn.db) connect();
    rowsUpToMax = Number(conn.db!.prepare('SELECT count(*) FROM log WHERE seq <= ?').pluck().get(last));
  } catch (error) {
    errors += 1;
    firstError ??= String(error);
  }
  const sorted = [...gaps.slice(1)].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
  const cpu = process.cpuUsage(cpuBefore);
  conn.db?.close();
  replyAndLeave({
    op: 'seen',
    baseline,
    seqs,
    visibleAt,
    t,
    polls,
    gapMs: { p50: at(0.5), p99: at(0.99), max: sorted.at(-1) ?? NaN },
    errors,
    firstError,
    rowsUpToMax,
    maxSeq: last,
    cpuS: (cpu.user + cpu.system) / 1e6,
  });
}

process.on('message', (job: ReaderJob) => {
  if (job.op === 'finish') {
    finish = { lastSeq: job.lastSeq, deadline: monoMs() + job.graceMs };
    return;
  }
  watch(job.db, job.everyMs).catch((error: unknown) => {
    replyAndLeave({ op: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  });
});

if (!process.send) {
  console.error('sqlite-reader.js is driven by bench/sqlite.ts over IPC (child_process.fork)');
  process.exit(2);
}
