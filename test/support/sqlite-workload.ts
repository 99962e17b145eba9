/**
 * Helpers for the SQLite replication tests: the application process (sqlite-app.ts) and its
 * foreign checkpointer, the bank database and a sampler that reads the backup's copy the way
 * a reporting tool would, a page-by-page comparison of two databases, and waiting until the
 * backup's copy is page-identical to the primary's database.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { ObjectStatus } from '../../src-main/contract/control.js';
import { sleep, waitFor, type TestNode } from './harness.js';

export const AppPath = fileURLToPath(new URL('./sqlite-app.js', import.meta.url));

export interface AppMessage {
  event: string;
  [field: string]: unknown;
}

/** The application (or checkpointer, or lock holder) in its own process. */
export class AppProcess {
  readonly messages: AppMessage[] = [];
  stderr = '';
  private readonly child: ChildProcess;
  private readonly exited: Promise<number | null>;
  exitCode: number | null = null;
  signalled: NodeJS.Signals | null = null;
  private buffered = '';

  /** `wrapper`: a command the application runs under (strace, to slow its fsyncs down). */
  constructor(
    readonly args: string[],
    wrapper: string[] = [],
  ) {
    const [command, ...rest] = [...wrapper, process.execPath, AppPath, ...args];
    const child = spawn(command!, rest, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout!.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString();
      let newline: number;
      while ((newline = this.buffered.indexOf('\n')) >= 0) {
        const line = this.buffered.slice(0, newline);
        this.buffered = this.buffered.slice(newline + 1);
        try {
          this.messages.push(JSON.parse(line) as AppMessage);
        } catch {
          this.stderr += `(stdout) ${line}\n`;
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitCode = code;
        this.signalled = signal;
        resolve(code);
      }),
    );
  }

  static start(...args: string[]): AppProcess {
    return new AppProcess(args);
  }

  /** The application under strace, each fsync/fdatasync delayed by delayMs: a COMMIT waits in its fsync, its commit frame already in the WAL. */
  static withSlowFsync(delayMs: number, ...args: string[]): AppProcess {
    return new AppProcess(args, ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=fsync,fdatasync', '-e', `inject=fsync,fdatasync:delay_enter=${delayMs * 1000}`]);
  }

  get running(): boolean {
    return this.exitCode === null && this.signalled === null;
  }

  /** Waits for a message of this event (failing early if the process dies first). */
  waitFor(event: string, timeoutMs = 30_000): Promise<AppMessage> {
    return waitFor(
      `the application (${this.args[0]}) to report '${event}'`,
      () => {
        const found = this.messages.find((m) => m.event === event);
        if (found) return found;
        if (!this.running) throw new Error(`it exited (${this.signalled ?? this.exitCode}): ${this.stderr}`);
        return undefined;
      },
      timeoutMs,
      5,
    );
  }

  /** Waits for the process to exit on its own; fails unless it exited 0. */
  async finished(timeoutMs = 60_000): Promise<AppMessage | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const code = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (code === 'timeout') throw new Error(`the application (${this.args.join(' ')}) did not finish within ${timeoutMs} ms`);
    if (code !== 0) throw new Error(`the application (${this.args.join(' ')}) exited with ${this.signalled ?? code}: ${this.stderr}`);
    return this.messages.find((m) => m.event === 'done');
  }

  /** kill -9 */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, and the 'done' message it answers with (checkpointer, lock holder). */
  async stop(): Promise<AppMessage | undefined> {
    if (!this.running) return this.messages.find((m) => m.event === 'done');
    this.child.kill('SIGTERM');
    await this.exited;
    return this.messages.find((m) => m.event === 'done' || m.event === 'released');
  }
}

/** Whether strace can run a program here (it needs ptrace), for the tests that slow fsync down with it. */
export function straceWorks(): boolean {
  try {
    execFileSync('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=fsync', '-e', 'inject=fsync:delay_enter=1000', 'true'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

export function openDatabase(path: string, options: Database.Options = {}): Database.Database {
  const db = new Database(path, { timeout: 10_000, ...options });
  db.pragma('busy_timeout = 10000');
  return db;
}

/** Removes a database and its side files. */
export function removeDatabase(path: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(`${path}${suffix}`, { force: true });
}

// --- the bank -------------------------------------------------------------------------------

export interface BankShape {
  accounts: number;
  balance: number;
}

export const Bank: BankShape = { accounts: 40, balance: 1000 };

/** A bank database: accounts with equal balances, a ledger, and meta.counter (transactions done). */
export function createBank(path: string, journalMode: 'wal' | 'delete' = 'wal', shape: BankShape = Bank, pageSize = 4096): void {
  const db = openDatabase(path);
  try {
    db.pragma(`page_size = ${pageSize}`);
    db.pragma(`journal_mode = ${journalMode}`);
    db.exec(`
      CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
      CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
      CREATE TABLE ledger(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, amount INTEGER NOT NULL, memo BLOB);
      INSERT INTO meta(key, value) VALUES ('counter', 0);
    `);
    const insert = db.prepare('INSERT INTO accounts(id, owner, balance) VALUES (?, ?, ?)');
    db.transaction(() => {
      for (let id = 1; id <= shape.accounts; id++) insert.run(id, `owner ${id}`, shape.balance);
    })();
  } finally {
    db.close();
  }
}

export interface BankReading {
  total: number;
  accounts: number;
  counter: number;
}

/** Sum, count and counter in one read transaction. */
export function readBank(db: Database.Database): BankReading {
  return db.transaction(() => {
    const { total, accounts } = db.prepare('SELECT sum(balance) AS total, count(*) AS accounts FROM accounts').get() as { total: number; accounts: number };
    const counter = Number(db.prepare("SELECT value FROM meta WHERE key = 'counter'").pluck().get());
    return { total, accounts, counter };
  })();
}

/** Reads the bank of the database at path (read-only). */
export function readBankAt(path: string): BankReading {
  const db = openDatabase(path, { readonly: true, fileMustExist: true });
  try {
    return readBank(db);
  } finally {
    db.close();
  }
}

export interface SamplerResult {
  samples: number;
  integrityChecks: number;
  /** Errors before the copy first held the bank (no file yet, no such table): expected. */
  notYet: number;
  firstCounter: number | null;
  lastCounter: number | null;
  failures: string[];
}

/**
 * Reads the backup's copy many times a second, each time on a fresh read-only connection:
 * the bank's total and size and the counter in one read transaction, and every 10th time
 * `PRAGMA integrity_check`. Records every violation: a total or size that differs, a counter
 * that goes backwards, an integrity error, and (once the copy held the bank) any failure to
 * open or read it.
 */
export class BankSampler {
  private stopped = false;
  private readonly done: Promise<void>;
  readonly result: SamplerResult = { samples: 0, integrityChecks: 0, notYet: 0, firstCounter: null, lastCounter: null, failures: [] };

  constructor(
    readonly path: string,
    readonly shape: BankShape = Bank,
    readonly everyMs = 15,
  ) {
    this.done = this.loop();
  }

  private fail(message: string): void {
    if (this.result.failures.length < 50) this.result.failures.push(`sample ${this.result.samples}: ${message}`);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      this.sample();
      await sleep(this.everyMs);
    }
  }

  private sample(): void {
    const result = this.result;
    const seen = result.lastCounter !== null;
    let db: Database.Database | null = null;
    try {
      if (!seen && !existsSync(this.path)) {
        result.notYet += 1;
        return;
      }
      db = new Database(this.path, { readonly: true, fileMustExist: true, timeout: 5000 });
      const reading = readBank(db);
      const check = result.samples % 10 === 0;
      const integrity = check ? (db.pragma('integrity_check', { simple: false }) as { integrity_check: string }[]).map((row) => row.integrity_check) : ['ok'];
      result.samples += 1;
      if (check) result.integrityChecks += 1;
      if (integrity.length !== 1 || integrity[0] !== 'ok') this.fail(`integrity_check: ${integrity.slice(0, 5).join('; ')}`);
      if (reading.total !== this.shape.accounts * this.shape.balance) this.fail(`the total is ${reading.total}, not ${this.shape.accounts * this.shape.balance} (counter ${reading.counter})`);
      if (reading.accounts !== this.shape.accounts) this.fail(`${reading.accounts} accounts, not ${this.shape.accounts}`);
      if (result.lastCounter !== null && reading.counter < result.lastCounter) this.fail(`the counter went back from ${result.lastCounter} to ${reading.counter}`);
      result.firstCounter ??= reading.counter;
      result.lastCounter = reading.counter;
    } catch (error) {
      const message = (error as Error).message;
      if (!seen && /no such table|unable to open|does not exist/i.test(message)) result.notYet += 1;
      else this.fail(`reading the copy failed: ${(error as { code?: string }).code ?? ''} ${message}`);
    } finally {
      try {
        db?.close();
      } catch (error) {
        this.fail(`closing failed: ${(error as Error).message}`);
      }
    }
  }

  async stop(): Promise<SamplerResult> {
    this.stopped = true;
    await this.done;
    return this.result;
  }
}

/** What a user checks of the samples: the invariant held every time, and enough was seen. */
export function bankViolations(result: SamplerResult, minSamples = 50): string[] {
  const problems = [...result.failures];
  if (result.samples < minSamples) problems.push(`only ${result.samples} samples were taken (${result.notYet} before the copy existed)`);
  if (result.firstCounter === null || result.lastCounter === null || result.lastCounter <= result.firstCounter) {
    problems.push(`the counter was not seen to advance (first ${result.firstCounter}, last ${result.lastCounter})`);
  }
  return problems;
}

// --- page comparison --------------------------------------------------------------------------

/**
 * Compares two databases page by page through sqlite_dbpage (read-only connections, each in
 * one read transaction), ignoring page 1's bytes 18 and 19 (the file format's journal mode:
 * the backup keeps its copy in WAL mode) and those of options.ignorePage1. Returns the
 * differences, empty when identical.
 */
export function pageDifferences(aPath: string, bPath: string, options: { ignorePage1?: readonly number[]; limit?: number } = {}): string[] {
  const limit = options.limit ?? 12;
  const ignored = new Set([18, 19, ...(options.ignorePage1 ?? [])]);
  if (!existsSync(bPath)) return [`${bPath} does not exist`];
  const a = openDatabase(aPath, { readonly: true, fileMustExist: true });
  const b = openDatabase(bPath, { readonly: true, fileMustExist: true });
  try {
    const differences: string[] = [];
    a.exec('BEGIN');
    b.exec('BEGIN');
    const pageSizes = [a.pragma('page_size', { simple: true }), b.pragma('page_size', { simple: true })];
    if (pageSizes[0] !== pageSizes[1]) return [`page size ${pageSizes[0]} vs ${pageSizes[1]}`];
    const counts = [Number(a.pragma('page_count', { simple: true })), Number(b.pragma('page_count', { simple: true }))] as const;
    if (counts[0] !== counts[1]) differences.push(`the source has ${counts[0]} pages, the copy ${counts[1]}`);
    const common = Math.min(counts[0], counts[1]);
    const ours = a.prepare('SELECT pgno, data FROM sqlite_dbpage WHERE pgno <= ? ORDER BY pgno').iterate(common) as IterableIterator<{ pgno: number; data: Buffer }>;
    const theirs = b.prepare('SELECT pgno, data FROM sqlite_dbpage WHERE pgno <= ? ORDER BY pgno').iterate(common) as IterableIterator<{ pgno: number; data: Buffer }>;
    let differing = 0;
    for (const left of ours) {
      const right = theirs.next().value as { pgno: number; data: Buffer } | undefined;
      if (!right || right.pgno !== left.pgno) {
        differences.push(`page ${left.pgno} has no counterpart in the copy`);
        break;
      }
      const bytes: number[] = [];
      for (let i = 0; i < left.data.length; i++) {
        if (left.pgno === 1 && ignored.has(i)) continue;
        if (left.data[i] !== right.data[i]) bytes.push(i);
      }
      if (bytes.length > 0) {
        differing += 1;
        if (differences.length < limit) differences.push(`page ${left.pgno} differs in ${bytes.length} bytes (at ${bytes.slice(0, 8).join(',')}${bytes.length > 8 ? ',...' : ''})`);
      }
    }
    theirs.return?.();
    if (differing > limit) differences.push(`${differing} pages differ in all`);
    return differences;
  } finally {
    a.close();
    b.close();
  }
}

/** The bodies of a `notes(id, body)` table, in id order (the audit and pause tests' database). */
export function noteBodies(path: string): string[] {
  const db = openDatabase(path, { readonly: true });
  try {
    return (db.prepare('SELECT body FROM notes ORDER BY id').all() as { body: string }[]).map((r) => r.body);
  } finally {
    db.close();
  }
}

export function integrity(path: string): string[] {
  const db = openDatabase(path, { readonly: true, fileMustExist: true });
  try {
    return (db.pragma('integrity_check', { simple: false }) as { integrity_check: string }[]).map((row) => row.integrity_check);
  } finally {
    db.close();
  }
}

// --- the nodes ----------------------------------------------------------------------------------

export async function objectStatus(node: TestNode, id: string): Promise<ObjectStatus | undefined> {
  return (await node.status()).objects.find((o) => o.id === id);
}

/** `protect sqlite SRC --to DEST` on the primary; returns the object id. */
export async function protectDatabase(primary: TestNode, source: string, target: string): Promise<string> {
  const result = await primary.cli('protect', 'sqlite', source, '--to', target);
  if (result.code !== 0) throw new Error(`protect sqlite ${source} exited ${result.code}: ${result.stderr}`);
  const id = result.stdout.trim().split('\n').at(-1)!;
  if (!/^d-[0-9a-f]{10}$/.test(id)) throw new Error(`protect sqlite printed '${result.stdout}', not an object id`);
  return id;
}

/** Stops protecting id and waits until the backup dropped it too (best effort: for cleanups). */
export async function unprotectDatabase(primary: TestNode, backup: TestNode, id: string): Promise<void> {
  if (!primary.process) return;
  await primary.cli('unprotect', id);
  if (!backup.process) return;
  await waitFor(`the backup to drop ${id}`, async () => ((await backup.status()).objects.some((o) => o.id === id) ? undefined : true), 10_000).catch(() => undefined);
}

/**
 * Page 1's file change counter (bytes 24..27), its copy in "version-valid-for" (92..95) and
 * the SQLite version number (96..99). SQLite writes these itself whenever it writes page 1
 * (pager_write_changecounter: the counter read from its own file header, plus one), on the
 * primary and on the backup alike, so they follow each file's own checkpoints and cannot be
 * carried over; every other byte must be identical.
 */
export const ChangeCounterBytes: readonly number[] = [24, 25, 26, 27, 92, 93, 94, 95, 96, 97, 98, 99];

export interface Converged {
  status: ObjectStatus;
  /** Differences found by a second comparison once converged (empty: still page-identical, ChangeCounterBytes aside). */
  strict: string[];
}

/**
 * Waits until the primary reports the database in sync with nothing pending and the copy is
 * page-identical to the source (page 1's change counter aside: see ChangeCounterBytes); on a
 * timeout the error says what was last seen.
 */
export async function convergeDatabase(primary: TestNode, id: string, source: string, target: string, what: string, timeoutMs = 30_000): Promise<Converged> {
  let last = '';
  try {
    const status = await waitFor(
      what,
      async () => {
        const status = await objectStatus(primary, id);
        if (status?.state !== 'in-sync' || status.pending !== 0) {
          last = `primary status: ${JSON.stringify(status)}`;
          return undefined;
        }
        const differences = pageDifferences(source, target, { ignorePage1: ChangeCounterBytes });
        last = `primary status in-sync (txid ${status.txid}) but the copy differs: ${differences.join('; ')}`;
        return differences.length === 0 ? status : undefined;
      },
      timeoutMs,
      200,
    );
    return { status, strict: pageDifferences(source, target, { ignorePage1: ChangeCounterBytes }) };
  } catch (error) {
    throw new Error(`${(error as Error).message}; last seen: ${last}`);
  }
}

/** The copy is the database, page for page (page 1's journal-mode bytes and ChangeCounterBytes aside). */
export function assertPageIdentical(converged: Converged): void {
  assert.deepEqual(converged.strict, [], 'the copy is page-identical to the database');
}

/** What a user would find alarming in the nodes' events about this database: errors and divergence. */
export function troubles(id: string, ...nodes: TestNode[]): string[] {
  return nodes.flatMap((node) =>
    node.events.filter((e) => e.object === id && (e.type === 'sqlite.error' || e.type === 'sqlite.diverged')).map((e) => `${node.name} ${e.type}: ${e.message}`),
  );
}

/** Waits until the object's status on node satisfies check. */
export function waitStatus(node: TestNode, id: string, what: string, check: (status: ObjectStatus) => boolean, timeoutMs = 15_000): Promise<ObjectStatus> {
  let last: ObjectStatus | undefined;
  return waitFor(
    what,
    async () => {
      last = await objectStatus(node, id);
      return last && check(last) ? last : undefined;
    },
    timeoutMs,
    50,
  ).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}; last status: ${JSON.stringify(last)}`);
  });
}
