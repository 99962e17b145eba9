/**
 * The application of the SQLite tests: a separate process (so that it can be kill -9'd and
 * never shares an event loop with the test) that uses a database the way a shop's program
 * would, through its own connection with a busy timeout. It writes one JSON object a line on
 * stdout: `{"event":"ready"}` once its connection is open, then what the command reports.
 *
 *   bank DB --ms N [--heavy] [--sync normal|full] [--memo MAX] [--rate PER_S]
 *                                                   transfers between accounts for N ms, as fast as it can or
 *                                                   at a fixed rate (every 10th with a ledger memo of up to MAX bytes)
 *   hang DB                                         a large transaction left open (spilled into the WAL)
 *   blobs DB --count N --min BYTES --max BYTES --seed S [--one]
 *                                                   large inserts, one transaction each (--one: all in one)
 *   random DB --seed S --ops N [--pause MS]         the randomized workload (sqlite-random.ts)
 *   checkpoint DB --every MS                        a foreign checkpointer: PASSIVE and TRUNCATE, alternately
 *   lock DB                                         holds the database in locking_mode=EXCLUSIVE until SIGTERM
 *   write DB --sql SQL [--sync normal|full]         runs SQL and exits
 */
import Database from 'better-sqlite3';
import { parseArgs } from 'node:util';
import { Random } from './random.js';
import { randomWorkload } from './sqlite-random.js';

/** The application's busy timeout: our write barrier is brief, but it exists. */
const BusyTimeoutMs = 10_000;

function say(message: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

function open(path: string, sync = 'normal'): Database.Database {
  const db = new Database(path, { timeout: BusyTimeoutMs });
  db.pragma(`busy_timeout = ${BusyTimeoutMs}`);
  db.pragma(`synchronous = ${sync}`);
  return db;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Moves money between random accounts, one transaction each, bumping meta.counter; the total never changes. */
async function bank(path: string, ms: number, heavy: boolean, sync: string, seed: number, memoBytes: number, rate: number): Promise<void> {
  const db = open(path, sync);
  const random = new Random(seed);
  const accounts = Number(db.prepare('SELECT count(*) FROM accounts').pluck().get());
  const move = db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?');
  const bump = db.prepare("UPDATE meta SET value = value + 1 WHERE key = 'counter'");
  const counter = db.prepare("SELECT value FROM meta WHERE key = 'counter'").pluck();
  const note = db.prepare('INSERT INTO ledger(at, amount, memo) VALUES (?, ?, ?)');
  const prune = db.prepare('DELETE FROM ledger WHERE id <= (SELECT max(id) FROM ledger) - 200');
  if (heavy) db.pragma('cache_size = 64'); // a small cache: large transactions spill into the WAL before they commit
  const transfer = db.transaction(() => {
    const from = random.int(1, accounts);
    let to = random.int(1, accounts - 1);
    if (to >= from) to += 1;
    const amount = random.int(1, 50);
    move.run(-amount, from);
    if (heavy) {
      // Many pages in one transaction: a memo of 256 KiB - 1 MiB, and every account touched.
      note.run(Date.now(), amount, random.bytes(random.int(256 * 1024, 1024 * 1024)));
      for (let id = 1; id <= accounts; id++) if (id !== from && id !== to) move.run(0, id);
    } else if (random.int(0, 9) === 0) {
      note.run(Date.now(), amount, random.text(random.int(10, memoBytes)));
    }
    move.run(amount, to);
    bump.run();
  });
  say({ event: 'ready' });
  const until = Date.now() + ms;
  let transactions = 0;
  while (Date.now() < until) {
    transfer.immediate();
    transactions += 1;
    if (transactions % 500 === 0) prune.run();
    if (rate > 0) {
      // A fixed rate: the next transaction when its time has come.
      const due = until - ms + (transactions * 1000) / rate;
      await sleep(Math.max(0, due - Date.now()));
    } else if (heavy || transactions % 50 === 0) {
      // Let signals in now and then; heavy transactions are slow enough already.
      await sleep(0);
    }
  }
  say({ event: 'done', transactions, counter: Number(counter.get()) });
  db.close();
}

/** Opens a transaction that breaks the bank invariant half-way and spills it into the WAL, then waits to be killed. */
function hang(path: string): void {
  const db = open(path);
  db.pragma('cache_size = 16');
  const accounts = Number(db.prepare('SELECT count(*) FROM accounts').pluck().get());
  db.exec('BEGIN IMMEDIATE');
  // Every account pays 1 into account 1 — only half of it happens before the crash.
  const move = db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?');
  for (let id = 2; id <= accounts; id++) move.run(-1, id);
  db.prepare("UPDATE meta SET value = value + 1000000 WHERE key = 'counter'").run();
  const random = new Random(7);
  const note = db.prepare('INSERT INTO ledger(at, amount, memo) VALUES (?, ?, ?)');
  for (let i = 0; i < 8; i++) note.run(Date.now(), 0, random.bytes(512 * 1024));
  say({ event: 'in-transaction', accounts });
  setInterval(() => undefined, 1000);
}

function blobs(path: string, count: number, min: number, max: number, seed: number, one: boolean): void {
  const db = open(path);
  const random = new Random(seed);
  db.exec('CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, data BLOB NOT NULL)');
  const insert = db.prepare('INSERT INTO blobs(data) VALUES (?)');
  say({ event: 'ready' });
  let bytes = 0;
  const all = () => {
    for (let i = 0; i < count; i++) {
      const size = random.int(min, max);
      insert.run(random.bytes(size));
      bytes += size;
    }
  };
  if (one) db.transaction(all).immediate();
  else all();
  say({ event: 'done', count, bytes });
  db.close();
}

async function random(path: string, seed: number, ops: number, pauseMs: number): Promise<void> {
  const db = open(path);
  say({ event: 'ready' });
  const log = await randomWorkload(db, new Random(seed), ops, pauseMs);
  say({ event: 'done', ops: log.length, log });
  db.close();
}

/** Someone else's checkpointer: PASSIVE and TRUNCATE alternately, a short busy timeout, SQLITE_BUSY ignored. */
function checkpoint(path: string, everyMs: number): void {
  const db = new Database(path, { timeout: 10 });
  db.pragma('busy_timeout = 10');
  const stats = { passive: 0, truncate: 0, busy: 0, framesCheckpointed: 0, truncated: 0, maxWalFrames: 0 };
  let truncate = false;
  const timer = setInterval(() => {
    const mode = truncate ? 'TRUNCATE' : 'PASSIVE';
    truncate = !truncate;
    try {
      const [row] = db.pragma(`wal_checkpoint(${mode})`) as { busy: number; log: number; checkpointed: number }[];
      if (mode === 'TRUNCATE') stats.truncate += 1;
      else stats.passive += 1;
      if (row?.busy) stats.busy += 1;
      else if (mode === 'TRUNCATE' && row?.log === 0) stats.truncated += 1;
      stats.framesCheckpointed += Math.max(0, row?.checkpointed ?? 0);
      stats.maxWalFrames = Math.max(stats.maxWalFrames, row?.log ?? 0);
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_BUSY' || (error as { code?: string }).code === 'SQLITE_LOCKED') stats.busy += 1;
      else throw error;
    }
  }, everyMs);
  process.once('SIGTERM', () => {
    clearInterval(timer);
    db.close();
    say({ event: 'done', ...stats });
    process.exit(0);
  });
  say({ event: 'ready' });
}

/** Holds the database in exclusive locking mode, a write done (so the lock is held), until SIGTERM. */
function lock(path: string): void {
  const db = open(path);
  db.pragma('locking_mode = EXCLUSIVE');
  db.exec("UPDATE meta SET value = value + 1 WHERE key = 'counter'");
  say({ event: 'locked' });
  const timer = setInterval(() => undefined, 1000);
  process.once('SIGTERM', () => {
    clearInterval(timer);
    db.close();
    say({ event: 'released' });
    process.exit(0);
  });
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      ms: { type: 'string', default: '8000' },
      heavy: { type: 'boolean', default: false },
      one: { type: 'boolean', default: false },
      sync: { type: 'string', default: 'normal' },
      seed: { type: 'string', default: '1' },
      ops: { type: 'string', default: '300' },
      count: { type: 'string', default: '10' },
      min: { type: 'string', default: '102400' },
      max: { type: 'string', default: '2097152' },
      every: { type: 'string', default: '3' },
      memo: { type: 'string', default: '400' },
      rate: { type: 'string', default: '0' },
      pause: { type: 'string', default: '0' },
      sql: { type: 'string', default: '' },
    },
  });
  const [command, path] = positionals;
  if (!command || !path) throw new Error('usage: sqlite-app COMMAND DB [options]');
  switch (command) {
    case 'bank':
      return bank(path, Number(values.ms), values.heavy, values.sync, Number(values.seed), Number(values.memo), Number(values.rate));
    case 'hang':
      return hang(path);
    case 'blobs':
      return blobs(path, Number(values.count), Number(values.min), Number(values.max), Number(values.seed), values.one);
    case 'random':
      return random(path, Number(values.seed), Number(values.ops), Number(values.pause));
    case 'checkpoint':
      return checkpoint(path, Number(values.every));
    case 'lock':
      return lock(path);
    case 'write': {
      const db = open(path, values.sync);
      say({ event: 'ready', pid: process.pid });
      db.exec(values.sql);
      db.close();
      say({ event: 'done' });
      return;
    }
    default:
      throw new Error(`unknown command ${command}`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`sqlite-app: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
