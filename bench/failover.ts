/**
 * npm run bench:failover — automatic failover and planned switchover of a pair with its
 * witness, three real processes on loopback at default settings (`lan`: beats every 200 ms,
 * lease 1,500 ms), with keepalived measured side by side in the same run.
 *
 * Set-up: `startTrio()` (primary alpha, backup beta, witness), a start hook on both nodes, and
 * one protected folder and one protected SQLite database (WAL mode) replicated alpha -> beta.
 * Each node's start hook appends `start NAME EPOCH MONO_NS WALL_NS` to a marks file: MONO_NS
 * is this machine's CLOCK_MONOTONIC (a 5-line C helper compiled with cc at start; the same
 * clock as process.hrtime here, and as the engine's `…Mono` event fields), WALL_NS is
 * `date +%s%N`. Without a C compiler the bench falls back to the wall clock (and says so).
 *
 * 1. kill -9 of the primary -> the backup is primary and its start hook has run: from the
 *    SIGKILL (hrtime just before it) to the hook's mark; p50/p99/max over --trials, goal
 *    <= 2 s. Breakdown from the new primary's events: peer.down, role.acting (sinceMono),
 *    failover.done. The killed node is then started again; it must come back as the backup by
 *    itself (role backup, every object in-sync, all three up) before the next trial, which
 *    kills the new primary: the roles alternate. A trial starts at least 2.5 s after the last
 *    restart (a node that has just started waits one full lease before it votes or promotes)
 *    and at a random phase of the 200 ms beat.
 * 2. `understudy switchover --json` run on the primary (the CLI, as an admin would) -> a file
 *    written into the new primary's protected folder as soon as the command returned is on
 *    the new backup (polled every 2 ms, content compared): p50/p99, goal <= 1 s. Also the
 *    command's own wall time and the ms it reports, and the same for a row inserted into the
 *    new primary's database (context).
 * 3. Changes written just before a switchover: a writer in this process writes a small file
 *    into the protected folder and inserts a row into the protected database on the primary
 *    every ~4 ms for 0.6-1 s, stops, and the switchover is issued at once through the control
 *    socket (the same command as the CLI's, without the CLI's ~150 ms of Node start-up between
 *    the last write and the engine hearing of it). Right after it returned, every file (content
 *    compared) and every row must be on the new primary; what is missing is counted as lost
 *    (and looked for again 3 s later, to tell lost from late). Goal 0. A switchover the
 *    engine refuses because an object still has changes pending (documented) is retried every
 *    20 ms; the refusals are counted.
 * 4. Anchor: measureKeepalived({ rounds: trials, kind: 'kill' }) (bench/keepalived-anchor.ts):
 *    a keepalived VRRP pair in two network namespaces at its defaults (advert_int 1 s), kill -9
 *    of the MASTER -> the BACKUP's notify script says MASTER. Needs root; without it the row
 *    says why. It runs after our nodes are gone, so the two never share the CPU.
 *
 * Nothing here changes the engine's settings. A failure (no failover, the old primary not
 * coming back as the backup, a refused or failed switchover, data lost) is recorded, reported
 * with the nodes' diagnostics, and the nodes' homes are kept for a post-mortem.
 * Options: --trials N (20). Smoke run: --trials 2.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import type BetterSqlite3 from 'better-sqlite3';
import type { StatusReport } from '../src-main/contract/control.js';
import { sleep, startTrio, tempDir, TestNode, waitFor, waitTrioUp } from '../test/support/harness.js';
import { measureKeepalived, type KeepalivedResult } from './keepalived-anchor.js';
import { distribution, percentile, printTable, writeResults, type Distribution } from './stats.js';
import { checkNoise, option, engineVersion, fail, failures, log, machineNoise, nodeDiagnostics, note, notes, ratio } from './support.js';

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;

// ---------------------------------------------------------------------------------------------
// Options and constants


const trials = option('trials', 20);
const Goals = { failoverMs: 2000, switchoverFlowMs: 1000, lost: 0 };
/** Generous: a failover slower than this did not happen. */
const FailoverTimeoutMs = 15_000;
/** The killed node, started again, is the backup with everything in sync within this. */
const ComeBackTimeoutMs = 45_000;
/** A node that just started waits one lease (1.5 s) before it votes or promotes; keep clear of that. */
const AfterRestartMs = 2500;
const FlowTimeoutMs = 10_000;
const WriterEveryMs = 4;
const LateCheckMs = 3000;
const FailoverEvents = /peer\.|role\.|failover\.|switchover\.|hook\.|divergence|lease|error|refused|cluster\./;

// ---------------------------------------------------------------------------------------------
// Clocks and the start hook's marks

/** This machine's CLOCK_MONOTONIC in ms (the engine's machineMonoMs uses the same). */
function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

/** Compiles a helper that prints CLOCK_MONOTONIC in ns; undefined without a C compiler. */
function buildMonoHelper(dir: string): string | undefined {
  const source = join(dir, 'mono.c');
  const binary = join(dir, 'mono-ns');
  writeFileSync(
    source,
    '#include <stdio.h>\n#include <time.h>\nint main(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);\n  printf("%lld%09ld\\n", (long long)t.tv_sec, t.tv_nsec); return 0; }\n',
  );
  for (const cc of ['cc', 'gcc', 'clang']) {
    const built = spawnSync(cc, ['-O2', '-o', binary, source], { encoding: 'utf8' });
    if (built.status !== 0) continue;
    const check = spawnSync(binary, [], { encoding: 'utf8' });
    const value = Number(BigInt(check.stdout.trim() || '0') / 1000n) / 1000;
    if (check.status === 0 && Math.abs(value - monoMs()) < 1000) return binary;
  }
  return undefined;
}

interface Mark {
  name: string;
  epoch: number;
  /** CLOCK_MONOTONIC ms, or null without the helper. */
  mono: number | null;
  /** Wall clock ms (same clock as Date.now()). */
  wall: number;
}

function readMarks(path: string): Mark[] {
  if (!existsSync(path)) return [];
  const marks: Mark[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const [word, name, epoch, mono, wall] = line.trim().split(/\s+/);
    if (word !== 'start' || !name || !wall || !/^\d+$/.test(wall)) continue;
    marks.push({
      name,
      epoch: Number(epoch),
      mono: mono && /^\d+$/.test(mono) ? Number(BigInt(mono) / 1000n) / 1000 : null,
      wall: Number(BigInt(wall) / 1000n) / 1000,
    });
  }
  return marks;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function round(value: number, digits = 1): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

function summary(values: number[]): Distribution {
  return distribution(values, 1);
}

/** The failure that makes further trials on this trio meaningless: the run stops measuring ours. */
class TrioBroken extends Error {}

interface Side {
  folder: string;
  db: string;
}

// ---------------------------------------------------------------------------------------------
// Waiting for a healthy trio

async function roleOf(node: TestNode): Promise<StatusReport['node']> {
  return (await node.status()).node;
}

/** Every node sees the two others up, the roles are as expected, and every object is in-sync with nothing pending. */
async function healthy(primary: TestNode, backup: TestNode, witness: TestNode, timeoutMs: number): Promise<void> {
  await waitFor(
    `${primary.name} primary and acting, ${backup.name} backup`,
    async () => {
      const [p, b] = await Promise.all([roleOf(primary), roleOf(backup)]);
      return p.role === 'primary' && p.acting && b.role === 'backup' ? true : undefined;
    },
    timeoutMs,
  );
  await waitTrioUp(primary, backup, witness, timeoutMs);
  await waitFor(
    `${primary.name}: 2 objects in-sync, nothing pending`,
    async () => {
      const status = await primary.status();
      return status.objects.length === 2 && status.objects.every((o) => o.state === 'in-sync' && o.pending === 0) ? true : undefined;
    },
    timeoutMs,
  );
}

function objectsText(status: StatusReport): string {
  return status.objects.map((o) => `${o.id} ${o.kind} ${o.state} pending ${o.pending}${o.error ? ` error ${o.error}` : ''}`).join('; ');
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 of the primary

interface KillTrial {
  trial: number;
  killed: string;
  promoted: string;
  /** SIGKILL -> start hook mark on the new primary. */
  toHookMs: number;
  toPeerDownMs: number | null;
  toActingMs: number | null;
  toFailoverDoneMs: number | null;
  /** What failover.done says itself. */
  failoverDoneReportedMs: number | null;
  epoch: number;
  /** serve of the killed node -> it reports role backup. */
  restartToBackupMs: number;
  /** serve of the killed node -> role backup, all three up, every object in-sync. */
  restartToHealthyMs: number;
  divergenceArchived: number;
}

async function killTrials(
  nodes: { primary: TestNode; backup: TestNode; witness: TestNode },
  marksPath: string,
  useMono: boolean,
  lastRestart: { at: number },
  results: KillTrial[],
): Promise<void> {
  const { witness } = nodes;
  for (let trial = 1; trial <= trials; trial++) {
    const { primary, backup } = nodes;
    await healthy(primary, backup, witness, 30_000).catch((error: unknown) => {
      throw new TrioBroken(`before kill trial ${trial}: ${(error as Error).message}`);
    });
    const wait = AfterRestartMs - (Date.now() - lastRestart.at);
    if (wait > 0) await sleep(wait);
    await sleep(200 + Math.random() * 400);

    const epochBefore = (await roleOf(backup)).epoch;
    const marksBefore = readMarks(marksPath).length;
    const backupSince = backup.events.length;
    const killedMono = monoMs();
    const killedWall = Date.now();
    primary.signal('SIGKILL');
    await primary.waitExit();

    let mark: Mark;
    try {
      mark = await waitFor(`${backup.name}'s start hook after the kill`, () => readMarks(marksPath).slice(marksBefore).find((m) => m.name === backup.name), FailoverTimeoutMs, 2);
    } catch (error) {
      const status = await backup.status().catch(() => null);
      throw new TrioBroken(
        `kill trial ${trial}: kill -9 of the primary ${primary.name}: no failover within ${FailoverTimeoutMs} ms (${(error as Error).message}); ` +
          `${backup.name} says role ${status?.node.role ?? '?'}, epoch ${status?.node.epoch ?? '?'}, acting ${status?.node.acting ?? '?'}, witness ${status?.witness?.state ?? '?'}; ` +
          `its events since the kill: ${backup.events.slice(backupSince).map((e) => `${e.at.slice(11, 23)} ${e.type}`).join(', ') || '(none)'}`,
      );
    }
    const toHookMs = useMono && mark.mono !== null ? mark.mono - killedMono : mark.wall - killedWall;
    const after = await backup.status();
    if (after.node.role !== 'primary' || !after.node.acting) {
      throw new TrioBroken(`kill trial ${trial}: ${backup.name}'s start hook ran, but it says role ${after.node.role}, acting ${after.node.acting}`);
    }
    if (after.node.epoch <= epochBefore) throw new TrioBroken(`kill trial ${trial}: ${backup.name} is primary in epoch ${after.node.epoch}, not after ${epochBefore}`);
    const done = await backup.waitForEvent('failover.done', backupSince, 3000).catch(() => null);
    const events = backup.events.slice(backupSince);
    const down = events.find((e) => e.type === 'peer.down' && e.peerName === primary.name);
    const acting = events.find((e) => e.type === 'role.acting');
    const sinceMono = typeof acting?.sinceMono === 'number' ? acting.sinceMono : null;

    // The killed node comes back: by itself it must become the backup of the new primary.
    const killed = primary;
    const restartedAt = Date.now();
    lastRestart.at = restartedAt;
    const killedSince = killed.events.length;
    await killed.serve();
    let restartToBackupMs: number;
    try {
      restartToBackupMs = await waitFor(`${killed.name} back as the backup`, async () => ((await roleOf(killed)).role === 'backup' ? Date.now() - restartedAt : undefined), ComeBackTimeoutMs);
      await healthy(backup, killed, witness, ComeBackTimeoutMs);
    } catch (error) {
      const [k, b] = await Promise.all([killed.status().catch(() => null), backup.status().catch(() => null)]);
      throw new TrioBroken(
        `kill trial ${trial}: the old primary ${killed.name}, started again, did not come back as the backup with everything in sync: ${(error as Error).message}; ` +
          `${killed.name} says role ${k?.node.role ?? '?'} epoch ${k?.node.epoch ?? '?'}, ${b ? `${backup.name} says role ${b.node.role} epoch ${b.node.epoch}, objects ${objectsText(b)}` : ''}`,
      );
    }
    const restartToHealthyMs = Date.now() - restartedAt;
    const divergenceArchived = killed.events.slice(killedSince).filter((e) => e.type === 'divergence.archived').length;

    const result: KillTrial = {
      trial,
      killed: killed.name,
      promoted: backup.name,
      toHookMs: round(toHookMs),
      toPeerDownMs: down ? Date.parse(down.at) - killedWall : null,
      toActingMs: sinceMono !== null ? round(sinceMono - killedMono) : null,
      toFailoverDoneMs: done ? Date.parse(done.at) - killedWall : null,
      failoverDoneReportedMs: typeof done?.ms === 'number' ? done.ms : null,
      epoch: after.node.epoch,
      restartToBackupMs,
      restartToHealthyMs,
      divergenceArchived,
    };
    results.push(result);
    log(
      `kill ${trial}/${trials}: ${killed.name} killed, ${backup.name} primary (epoch ${result.epoch}) with its start hook after ${result.toHookMs} ms ` +
        `(down ${result.toPeerDownMs ?? '?'}, acting ${result.toActingMs ?? '?'}, failover.done ${result.toFailoverDoneMs ?? '?'}); ${killed.name} back as backup in ${restartToBackupMs} ms, all in sync in ${restartToHealthyMs} ms`,
    );
    nodes.primary = backup;
    nodes.backup = killed;
  }
}

// ---------------------------------------------------------------------------------------------
// 2. switchover -> replication the other way

interface SwitchTrial {
  trial: number;
  from: string;
  to: string;
  exitCode: number;
  /** Wall time of `understudy switchover --json` (spawn to exit). */
  cliMs: number;
  /** The ms the command reported. */
  reportedMs: number | null;
  /** Issue -> file written on the new primary present (same content) on the new backup. */
  toFileMs: number;
  /** Issue -> row inserted on the new primary readable on the new backup. */
  toRowMs: number;
  /** Write on the new primary -> on the new backup. */
  fileLagMs: number;
  rowLagMs: number;
}

function rowVisible(db: BetterSqlite3.Database, trial: number): boolean {
  return db.prepare('SELECT 1 FROM flow WHERE trial = ?').get(trial) !== undefined;
}

async function switchTrials(nodes: { primary: TestNode; backup: TestNode; witness: TestNode }, sides: Map<string, Side>, results: SwitchTrial[]): Promise<void> {
  for (let trial = 1; trial <= trials; trial++) {
    const { primary: from, backup: to, witness } = nodes;
    await healthy(from, to, witness, 30_000).catch((error: unknown) => {
      throw new TrioBroken(`before switchover trial ${trial}: ${(error as Error).message}`);
    });
    await sleep(200 + Math.random() * 400);
    const fromSince = from.events.length;
    const toSince = to.events.length;
    const issued = monoMs();
    const result = await from.cli('switchover', '--json');
    const cliMs = monoMs() - issued;
    const [f, t] = await Promise.all([from.status(), to.status()]);
    const swapped = f.node.role === 'backup' && t.node.role === 'primary';
    // A command that failed although the roles did swap: what happened is measured all the same
    // (the trial is kept apart from the statistics), then the phase stops.
    let failed: string | null = null;
    if (result.code !== 0) {
      failed =
        `switchover trial ${trial}: \`understudy switchover --json\` on ${from.name} exited ${result.code} after ${round(cliMs)} ms: ${result.stderr.trim()} ` +
        `(then ${from.name} says ${f.node.role} epoch ${f.node.epoch}, ${to.name} says ${t.node.role} epoch ${t.node.epoch} acting ${t.node.acting}; ` +
        `${from.name}'s events since: ${from.events.slice(fromSince).map((e) => `${e.at.slice(11, 23)} ${e.type}`).join(', ')}; ` +
        `${to.name}'s: ${to.events.slice(toSince).map((e) => `${e.at.slice(11, 23)} ${e.type}`).join(', ')})`;
      if (!swapped) throw new TrioBroken(failed);
    } else if (!swapped) {
      throw new TrioBroken(`switchover trial ${trial}: the command said ${result.stdout.trim()}, but ${from.name} is ${f.node.role} and ${to.name} is ${t.node.role}`);
    }
    const reported = (result.code === 0 ? JSON.parse(result.stdout) : {}) as { ms?: number; role?: string; epoch?: number };

    // Replication the other way: a file and a row written on the new primary.
    const newPrimary = sides.get(to.name)!;
    const newBackup = sides.get(from.name)!;
    const name = `flow-${trial}-${Date.now()}.txt`;
    const content = `written on ${to.name} after switchover ${trial}\n`;
    writeFileSync(join(newPrimary.folder, name), content);
    const fileWritten = monoMs();
    const app = new Database(newPrimary.db);
    app.prepare('INSERT INTO flow(trial, node) VALUES (?, ?)').run(trial, to.name);
    app.close();
    const rowWritten = monoMs();
    const reader = new Database(newBackup.db, { readonly: true, fileMustExist: true });
    let fileSeen: number | null = null;
    let rowSeen: number | null = null;
    try {
      await waitFor(
        `the file and the row written on ${to.name} to be on ${from.name}`,
        () => {
          if (fileSeen === null) {
            try {
              if (readFileSync(join(newBackup.folder, name), 'utf8') === content) fileSeen = monoMs();
            } catch {
              // not there yet
            }
          }
          if (rowSeen === null && rowVisible(reader, trial)) rowSeen = monoMs();
          return fileSeen !== null && rowSeen !== null ? true : undefined;
        },
        FlowTimeoutMs,
        2,
      );
    } catch (error) {
      const status = await to.status().catch(() => null);
      throw new TrioBroken(
        `switchover trial ${trial}: replication ${to.name} -> ${from.name} after the switchover: ${(error as Error).message} (file ${fileSeen === null ? 'missing' : 'there'}, row ${rowSeen === null ? 'missing' : 'there'}; ` +
          `${to.name} objects: ${status ? objectsText(status) : '?'})`,
      );
    } finally {
      reader.close();
    }
    const entry: SwitchTrial = {
      trial,
      from: from.name,
      to: to.name,
      exitCode: result.code,
      cliMs: round(cliMs),
      reportedMs: typeof reported.ms === 'number' ? reported.ms : null,
      toFileMs: round(fileSeen! - issued),
      toRowMs: round(rowSeen! - issued),
      fileLagMs: round(fileSeen! - fileWritten),
      rowLagMs: round(rowSeen! - rowWritten),
    };
    results.push(entry);
    log(
      `switchover ${trial}/${trials}: ${from.name} -> ${to.name}: command ${result.code === 0 ? '' : `FAILED (exit ${result.code}) `}${entry.cliMs} ms (reports ${entry.reportedMs ?? '?'} ms); file on ${from.name} ${entry.toFileMs} ms after issue (${entry.fileLagMs} ms after written), row ${entry.toRowMs} ms (${entry.rowLagMs})`,
    );
    nodes.primary = to;
    nodes.backup = from;
    if (failed) throw new TrioBroken(failed);
  }
}

// ---------------------------------------------------------------------------------------------
// 3. changes written just before a switchover

interface WriterTrial {
  trial: number;
  from: string;
  to: string;
  /** The switchover failed (the roles swapped all the same): kept apart from the statistics. */
  error: string | null;
  writtenFiles: number;
  writtenRows: number;
  /** Last write done -> switchover issued. */
  lastWriteToIssueMs: number;
  refusals: number;
  refusalReasons: string[];
  /** First issue -> the accepted switchover returned. */
  switchoverMs: number;
  lostFiles: string[];
  lostRows: number[];
  /** Of the lost, what was still missing LateCheckMs later. */
  stillLostFiles: number;
  stillLostRows: number;
}

class Writer {
  files: string[] = [];
  rows: number[] = [];
  lastWriteMono = 0;
  private stopped = false;
  private readonly done: Promise<void>;
  private readonly db: BetterSqlite3.Database;

  constructor(
    private readonly side: Side,
    private readonly trial: number,
  ) {
    this.db = new Database(side.db);
    this.db.pragma('journal_mode = WAL');
    this.done = this.loop();
  }

  static content(trial: number, i: number): string {
    return `trial ${trial} change ${i}\n`.repeat(8);
  }

  private async loop(): Promise<void> {
    const insert = this.db.prepare('INSERT INTO w(trial, i, body) VALUES (?, ?, ?)');
    for (let i = 0; !this.stopped; i++) {
      const name = `w-${this.trial}-${i}.txt`;
      writeFileSync(join(this.side.folder, name), Writer.content(this.trial, i));
      this.files.push(name);
      insert.run(this.trial, i, `row ${i} of trial ${this.trial}`);
      this.rows.push(i);
      this.lastWriteMono = monoMs();
      await sleep(WriterEveryMs);
    }
  }

  /** Stops after the write in progress; the database connection is closed (the engine keeps its own). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
    this.db.close();
  }
}

function missing(side: Side, trial: number, files: string[], rows: number[]): { files: string[]; rows: number[] } {
  const lostFiles = files.filter((name, i) => {
    try {
      return readFileSync(join(side.folder, name), 'utf8') !== Writer.content(trial, Number(/-(\d+)\.txt$/.exec(name)?.[1] ?? i));
    } catch {
      return true;
    }
  });
  const db = new Database(side.db, { readonly: true, fileMustExist: true });
  try {
    const present = new Set((db.prepare('SELECT i FROM w WHERE trial = ?').all(trial) as { i: number }[]).map((r) => r.i));
    return { files: lostFiles, rows: rows.filter((i) => !present.has(i)) };
  } finally {
    db.close();
  }
}

async function writerTrials(nodes: { primary: TestNode; backup: TestNode; witness: TestNode }, sides: Map<string, Side>, results: WriterTrial[]): Promise<void> {
  for (let trial = 1; trial <= trials; trial++) {
    const { primary: from, backup: to, witness } = nodes;
    await healthy(from, to, witness, 30_000).catch((error: unknown) => {
      throw new TrioBroken(`before writer trial ${trial}: ${(error as Error).message}`);
    });
    const writer = new Writer(sides.get(from.name)!, trial);
    await sleep(600 + Math.random() * 400);
    await writer.stop();
    const issued = monoMs();
    const lastWriteToIssueMs = issued - writer.lastWriteMono;
    const fromSince = from.events.length;
    let refusals = 0;
    const refusalReasons: string[] = [];
    let failed: string | null = null;
    for (;;) {
      try {
        await from.call('cluster:switchover', {});
        break;
      } catch (error) {
        const message = (error as Error).message;
        if (/not in sync/.test(message) && monoMs() - issued < 10_000) {
          refusals++;
          if (refusalReasons.length < 3) refusalReasons.push(message);
          await sleep(20);
          continue;
        }
        failed = `writer trial ${trial}: the switchover on ${from.name} failed after ${refusals} refusal(s), ${round(monoMs() - issued)} ms after it was issued: ${message}`;
        break;
      }
    }
    const switchoverMs = monoMs() - issued;
    if (failed) {
      // Whether the roles swapped all the same decides where the writes must be.
      const [f, t] = await Promise.all([roleOf(from), roleOf(to)]);
      if (f.role !== 'backup' || t.role !== 'primary') throw new TrioBroken(`${failed} (${from.name} is ${f.role}, ${to.name} is ${t.role})`);
      failed += ` (the roles did swap: ${to.name} is primary in epoch ${t.epoch}; the writes were checked on it)`;
    }
    const lost = missing(sides.get(to.name)!, trial, writer.files, writer.rows);
    let still = lost;
    if (lost.files.length > 0 || lost.rows.length > 0) {
      await sleep(LateCheckMs);
      still = missing(sides.get(to.name)!, trial, lost.files, lost.rows);
      fail(
        `writer trial ${trial}: changes lost at switchover ${from.name} -> ${to.name}`,
        `${lost.files.length} of ${writer.files.length} files and ${lost.rows.length} of ${writer.rows.length} rows written on ${from.name} before the switchover were not on ${to.name} when it returned ` +
          `(still missing ${LateCheckMs} ms later: ${still.files.length} files, ${still.rows.length} rows; e.g. ${[...lost.files.slice(0, 3), ...lost.rows.slice(0, 3).map((i) => `row i=${i}`)].join(', ')}); ` +
          `${from.name}'s events: ${from.events.slice(fromSince).map((e) => `${e.type}${e.type === 'switchover.done' ? ` drained ${String(e.drainedMs)} ms` : ''}`).join(', ')}`,
      );
    }
    const entry: WriterTrial = {
      trial,
      from: from.name,
      to: to.name,
      error: failed,
      writtenFiles: writer.files.length,
      writtenRows: writer.rows.length,
      lastWriteToIssueMs: round(lastWriteToIssueMs, 2),
      refusals,
      refusalReasons,
      switchoverMs: round(switchoverMs),
      lostFiles: lost.files,
      lostRows: lost.rows,
      stillLostFiles: still.files.length,
      stillLostRows: still.rows.length,
    };
    results.push(entry);
    log(
      `writer ${trial}/${trials}: ${entry.writtenFiles} files + ${entry.writtenRows} rows on ${from.name}, switchover issued ${entry.lastWriteToIssueMs} ms after the last write` +
        `${refusals > 0 ? ` (refused ${refusals} time(s): pending changes)` : ''}, done in ${entry.switchoverMs} ms; lost on ${to.name}: ${lost.files.length} files, ${lost.rows.length} rows`,
    );
    const [f, t] = await Promise.all([roleOf(from), roleOf(to)]);
    if (f.role !== 'backup' || t.role !== 'primary') throw new TrioBroken(`writer trial ${trial}: after the switchover ${from.name} is ${f.role} and ${to.name} is ${t.role}`);
    nodes.primary = to;
    nodes.backup = from;
    if (failed) throw new TrioBroken(failed);
  }
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const startedAt = Date.now();
  const engine = engineVersion();
  log(`bench:failover: ${trials} trials each; engine ${engine}`);
  const dir = tempDir('bench-failover');
  const sides = new Map<string, Side>();
  const a: Side = { folder: join(dir, 'files-alpha'), db: join(dir, 'alpha.db') };
  const b: Side = { folder: join(dir, 'files-beta'), db: join(dir, 'beta.db') };
  mkdirSync(a.folder);
  for (let i = 0; i < 20; i++) writeFileSync(join(a.folder, `doc-${i}.txt`), `document ${i}\n`.repeat(50));
  const db = new Database(a.db);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT); CREATE TABLE w(trial INTEGER, i INTEGER, body TEXT, PRIMARY KEY(trial, i)); CREATE TABLE flow(trial INTEGER, node TEXT, at TEXT DEFAULT CURRENT_TIMESTAMP)');
  db.prepare('INSERT INTO notes(body) VALUES (?)').run('first');
  db.close();
  const marksPath = join(dir, 'marks.log');
  const helper = buildMonoHelper(dir);
  const useMono = helper !== undefined;
  if (!useMono) note('no C compiler: the start hook marks the wall clock (date +%s%N), compared with Date.now() at the kill (same machine, so the same clock, but an NTP step during a trial would skew it)');

  let nodes: TestNode[] = [];
  const kill: KillTrial[] = [];
  const allSwitches: SwitchTrial[] = [];
  const allWrites: WriterTrial[] = [];
  let diagnostics: string | null = null;
  const broken: string[] = [];
  let keepalived: KeepalivedResult | null = null;
  const versions = { node: process.version };
  try {
    const [alpha, beta, witness] = await startTrio();
    nodes = [alpha, beta, witness];
    sides.set(alpha.name, a);
    sides.set(beta.name, b);
    for (const node of [alpha, beta]) {
      const mono = helper ?? 'echo none';
      const set = await node.cli('hooks', 'set', '--start', `echo "start ${node.name} $UNDERSTUDY_EPOCH $(${mono}) $(date +%s%N)" >> ${marksPath}`);
      if (set.code !== 0) throw new Error(`hooks set on ${node.name}: ${set.stderr}`);
    }
    for (const args of [['folder', a.folder, '--to', b.folder], ['sqlite', a.db, '--to', b.db]]) {
      const protectedIt = await alpha.cli('protect', ...args);
      if (protectedIt.code !== 0) throw new Error(`protect ${args.join(' ')}: ${protectedIt.stderr}`);
    }
    const trio = { primary: alpha, backup: beta, witness };
    await healthy(alpha, beta, witness, 60_000);
    log(`trio up: ${alpha.name} primary, ${beta.name} backup, witness; a folder and a database protected and in sync`);

    const lastRestart = { at: 0 };
    const phases: [string, () => Promise<void>][] = [
      ['kill -9', () => killTrials(trio, marksPath, useMono, lastRestart, kill)],
      ['switchover', () => switchTrials(trio, sides, allSwitches)],
      ['writer + switchover', () => writerTrials(trio, sides, allWrites)],
    ];
    // A phase that fails stops; the next one runs if the trio is healthy again (it checks).
    for (const [name, phase] of phases) {
      try {
        checkNoise(name);
        await phase();
      } catch (error) {
        if (!(error instanceof TrioBroken)) throw error;
        broken.push(`${name}: ${error.message}`);
        fail(name, error);
      }
    }
    if (failures.length > 0) {
      diagnostics = nodes.map((node) => nodeDiagnostics(node, FailoverEvents)).join('\n\n');
      process.env.UNDERSTUDY_KEEP_TEST_HOMES = '1';
      note(`kept the bench directory (folders, databases, marks): ${dir}`);
    }
  } catch (error) {
    for (const node of nodes) console.error(`\n${nodeDiagnostics(node, FailoverEvents)}`);
    process.env.UNDERSTUDY_KEEP_TEST_HOMES = '1';
    throw error;
  } finally {
    await Promise.all(nodes.map((node) => node.destroy()));
    if (!process.env.UNDERSTUDY_KEEP_TEST_HOMES) rmSync(dir, { recursive: true, force: true });
  }

  // ----- 4. the anchor, alone on the machine
  try {
    checkNoise('keepalived');
    log(`keepalived anchor: ${trials} rounds of kill -9 of the MASTER (about 9 s a round)`);
    keepalived = await measureKeepalived({ rounds: trials, kind: 'kill' });
    if (!keepalived.available) note(`keepalived anchor not measured: ${keepalived.reason}`);
  } catch (error) {
    fail('keepalived anchor', error);
  }

  // ----- report: trials whose switchover failed are kept apart from the statistics
  const switches = allSwitches.filter((t) => t.exitCode === 0);
  const writes = allWrites.filter((t) => t.error === null);
  const failover = summary(kill.map((t) => t.toHookMs));
  const down = summary(kill.flatMap((t) => (t.toPeerDownMs === null ? [] : [t.toPeerDownMs])));
  const acting = summary(kill.flatMap((t) => (t.toActingMs === null ? [] : [t.toActingMs])));
  const doneS = summary(kill.flatMap((t) => (t.toFailoverDoneMs === null ? [] : [t.toFailoverDoneMs])));
  const comeBack = summary(kill.map((t) => t.restartToBackupMs));
  const comeBackHealthy = summary(kill.map((t) => t.restartToHealthyMs));
  const flowFile = summary(switches.map((t) => t.toFileMs));
  const flowRow = summary(switches.map((t) => t.toRowMs));
  const cli = summary(switches.map((t) => t.cliMs));
  const reportedS = summary(switches.flatMap((t) => (t.reportedMs === null ? [] : [t.reportedMs])));
  const writerSwitch = summary(writes.map((t) => t.switchoverMs));
  const written = { files: writes.reduce((n, t) => n + t.writtenFiles, 0), rows: writes.reduce((n, t) => n + t.writtenRows, 0) };
  const lost = { files: writes.reduce((n, t) => n + t.lostFiles.length, 0), rows: writes.reduce((n, t) => n + t.lostRows.length, 0) };
  const stillLost = { files: writes.reduce((n, t) => n + t.stillLostFiles, 0), rows: writes.reduce((n, t) => n + t.stillLostRows, 0) };
  const refusals = writes.reduce((n, t) => n + t.refusals, 0);
  const refusedTrials = writes.filter((t) => t.refusals > 0).length;
  const ka = keepalived?.available ? summary(keepalived.detectMs) : null;

  const num = (value: number | null) => (value === null ? '' : value);
  const verdict = (value: number | null, goal: number, runs: number) => (runs < trials ? 'FAILED' : value === null ? '' : value <= goal ? 'met' : 'missed');
  const kaText = ka ? `${ka.p50} / ${ka.p99} / ${ka.max}` : `n/a: ${keepalived?.reason ?? 'failed'}`;
  /** A line under a goal's line: its numbers, for context. */
  const contextRow = (measure: string, s: Distribution): Record<string, string | number> => ({
    measure: `  ${measure}`,
    runs: s.n,
    p50: num(s.p50),
    p99: num(s.p99),
    max: num(s.max),
    goal: '(context)',
    result: '',
    'keepalived p50 / p99 / max': '',
    'ratio p50': '',
  });
  const rows: Record<string, string | number>[] = [
    {
      measure: 'kill -9 primary -> backup primary, start hook ran (ms)',
      runs: failover.n,
      p50: num(failover.p50),
      p99: num(failover.p99),
      max: num(failover.max),
      goal: `<= ${Goals.failoverMs} (p99)`,
      result: verdict(failover.p99, Goals.failoverMs, failover.n),
      'keepalived p50 / p99 / max': kaText,
      'ratio p50': ka ? (ratio(failover.p50, ka.p50) ?? '') : '',
    },
    contextRow('kill -> peer.down on the backup', down),
    contextRow('kill -> role.acting (sinceMono)', acting),
    contextRow('kill -> failover.done event', doneS),
    contextRow('killed node restarted -> role backup', comeBack),
    contextRow('... -> all up, every object in-sync', comeBackHealthy),
    {
      measure: 'switchover issued -> file from new primary on new backup (ms)',
      runs: flowFile.n,
      p50: num(flowFile.p50),
      p99: num(flowFile.p99),
      max: num(flowFile.max),
      goal: `<= ${Goals.switchoverFlowMs} (p99)`,
      result: verdict(flowFile.p99, Goals.switchoverFlowMs, flowFile.n),
      'keepalived p50 / p99 / max': '',
      'ratio p50': '',
    },
    contextRow('... row from new primary on new backup', flowRow),
    contextRow('`understudy switchover` wall time (CLI)', cli),
    contextRow('ms the command reports', reportedS),
    {
      measure: 'changes written just before switchover, lost',
      runs: writes.length,
      p50: `${lost.files + lost.rows} lost`,
      p99: `of ${written.files} files`,
      max: `+ ${written.rows} rows`,
      goal: `${Goals.lost}`,
      result: writes.length < trials ? 'FAILED' : lost.files + lost.rows === 0 ? 'met' : 'FAILED',
      'keepalived p50 / p99 / max': '',
      'ratio p50': '',
    },
    contextRow('switchover right after the writes (control call)', writerSwitch),
  ];
  console.log('');
  printTable(rows);
  console.log('');
  console.log(
    `detail: timing of the failover from ${useMono ? "CLOCK_MONOTONIC (the start hook's helper and this process's hrtime)" : 'the wall clock'}; keepalived: kill -9 of the MASTER -> its BACKUP's notify MASTER, wall clock, default advert_int 1 s (bound 3.61 s)`,
  );
  if (writes.length > 0) {
    console.log(
      `detail: writer: ${written.files} files and ${written.rows} rows over ${writes.length} switchovers; issued ${round(percentile(writes.map((t) => t.lastWriteToIssueMs), 0.5), 2)} ms (p50) after the last write; ` +
        `${refusedTrials} of ${writes.length} first attempts refused for pending changes (${refusals} refusals in all) and retried every 20 ms; lost when it returned: ${lost.files} files, ${lost.rows} rows; still missing ${LateCheckMs} ms later: ${stillLost.files} files, ${stillLost.rows} rows`,
    );
    if (refusalReasons(writes)) console.log(`detail: a refusal said: ${refusalReasons(writes)}`);
  }
  const archived = kill.reduce((n, t) => n + t.divergenceArchived, 0);
  if (archived > 0) note(`${archived} divergence archive(s) written by a returning primary during the kill trials (the pair was idle: nothing should have been unacknowledged)`);
  for (const t of allSwitches.filter((x) => x.exitCode !== 0)) {
    console.log(`detail: failed switchover trial ${t.trial} (${t.from} -> ${t.to}): the command exited ${t.exitCode} after ${t.cliMs} ms; the roles swapped all the same, and the file written on ${t.to} after it returned was on ${t.from} ${t.fileLagMs} ms later (row ${t.rowLagMs} ms)`);
  }
  for (const t of allWrites.filter((x) => x.error !== null)) {
    console.log(`detail: failed writer trial ${t.trial} (${t.from} -> ${t.to}): ${t.writtenFiles} files + ${t.writtenRows} rows written, switchover call returned after ${t.switchoverMs} ms with an error; missing on ${t.to}: ${t.lostFiles.length} files, ${t.lostRows.length} rows`);
  }
  for (const text of broken) console.log(`detail: measuring stopped early in ${text}`);
  const totalMs = Date.now() - startedAt;
  console.log(`total run time ${(totalMs / 1000).toFixed(0)} s; engine ${engine}; node ${versions.node}`);
  for (const text of notes) console.log(`note: ${text}`);

  const path = writeResults('failover', {
    date: new Date().toISOString(),
    settings: { trials, profile: 'lan (defaults: heartbeatMs 200, leaseMs 1500, stopBudgetMs 500)', transport: 'loopback, three processes on this machine', clock: useMono ? 'CLOCK_MONOTONIC' : 'wall clock' },
    engine,
    versions,
    goals: Goals,
    failover: { toStartHookMs: failover, toPeerDownMs: down, toActingMs: acting, toFailoverDoneMs: doneS, restartToBackupMs: comeBack, restartToHealthyMs: comeBackHealthy, trials: kill },
    switchover: { toFileOnNewBackupMs: flowFile, toRowOnNewBackupMs: flowRow, cliMs: cli, reportedMs: reportedS, trials: allSwitches },
    writtenBeforeSwitchover: { written, lost, stillLostAfterMs: { ms: LateCheckMs, ...stillLost }, refusals, refusedTrials, switchoverMs: writerSwitch, trials: allWrites },
    anchor: {
      name: 'keepalived, default advert_int 1 s, priorities 150/100, two network namespaces, kill -9 of the MASTER -> BACKUP notify MASTER',
      result: keepalived,
      summary: ka,
      ratioP50: ka ? ratio(failover.p50, ka.p50) : null,
      ratioP99: ka ? ratio(failover.p99, ka.p99) : null,
    },
    machineNoise,
    totalMs,
    stoppedEarly: broken,
    notes,
    failures,
    diagnostics,
  });
  console.log(`\nwrote ${path}`);
  if (failures.length > 0) {
    console.error(`\n!!! ${failures.length} FAILURE(S):\n${failures.map((f) => `  - ${f}`).join('\n')}\n\n${diagnostics ?? ''}`);
    process.exitCode = 1;
  }
}

function refusalReasons(writes: WriterTrial[]): string {
  return writes.flatMap((t) => t.refusalReasons).slice(0, 1).join('');
}

main().catch((error: unknown) => {
  console.error(`bench:failover: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  if (failures.length > 0) console.error(`earlier failures:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  process.exitCode = 1;
});
