/**
 * npm run bench:audit — audits of the backup's copies between two real nodes on loopback, at
 * default settings (continuous audits every 45 s on the backup, DefaultAuditMs), with rsync measured in the
 * same run on the same two trees.
 *
 * Set-up: a tree of --files (100,000) small files (1-4 KiB, 100 a folder), a folder holding one
 * --big-mib (64) MiB file, and a --db-mib (20) MiB SQLite database (WAL mode, page size 4096),
 * each protected alpha -> beta (`protect folder|sqlite SRC --to DEST`) and waited for until the
 * primary says `in-sync` with pending 0. A watcher polls the backup's status every 500 ms and
 * records each object's audits (`lastAudit`), so the continuous audits' 60 s phase is known:
 * every timed run waits for a quiet window (no continuous audit of any object running or due
 * during it), and a run that overlapped one all the same is flagged.
 *
 * 1. `understudy audit ID --json` of the unchanged tree (no scrub), --runs (5) times, run on
 *    the primary (it asks the backup and waits): the command's wall time (spawn to exit,
 *    including the CLI's start-up), the `ms` it reports, and the bytes exchanged = the delta of
 *    the backup's status `peers[0].linkBytes` (data-link frame bytes, sent + received) across it.
 *    Goals: wall time < 10 s (max of the runs), bytes < 5 MiB (max). Anchor, interleaved with
 *    ours: `rsync -a --dry-run --delete --stats SRC/ rsync://127.0.0.1:PORT/tree/` against a
 *    loopback rsync daemon whose module is the backup's copy (wall time; "Total bytes sent" +
 *    "Total bytes received"); ratio ours/rsync on p50s. Context: `audit ID --scrub --json` once
 *    (every file re-hashed), next to `rsync ... --checksum` once.
 * 2. Time to detect a hand edit of the backup's copy at default settings: --detect-trials (3)
 *    times a line is appended to a random file of the tree's copy on the backup; time from the
 *    append to the `audit.repaired` event of the tree on the backup (its `at`, same clock). The
 *    edits land at stratified random points of the 60 s audit cycle (trial i at (i + u)/N of it,
 *    u uniform), so the trials do not all start right after an audit. Goal <= 60 s (max).
 * 3. Bytes to repair, against the size of what differs: (a) one byte flipped in each of --blocks
 *    (8) different 16 KiB blocks of the 64 MiB file's copy, its mtime put back (utimes), then
 *    `audit ID --scrub --json`; expected 8 x 16384 B. (b) --pages (50) pages (not page 1) of the
 *    database's copy overwritten with random bytes, then `audit ID --json`; expected 50 x 4096 B.
 *    Bytes = the backup's linkBytes delta (sent + received) across damage + audit; goal
 *    <= 1.1 x expected. Each copy is then compared with its source.
 *
 * Nothing here changes the engine's settings (UNDERSTUDY_RESCAN_MS and UNDERSTUDY_SCRUB_SLICE_BYTES
 * are removed from the environment the nodes inherit). The trees are warm in the page cache
 * for both ours and rsync (just written and synced). Needs Linux; rsync (installed with apt-get
 * when missing and root; without it the anchor is skipped).
 * Everything (the data, the rsync daemon's config, and the nodes' homes, through TMPDIR) lives in
 * one private directory, --dir (/var/tmp)/understudy-bench-audit-XXXXXX, removed at the end.
 * Options: --files N (100000) --runs N (5) --detect-trials N (3) --big-mib M (64) --db-mib M (20)
 *          --blocks N (8) --pages N (50) --dir D (/var/tmp)
 * Quick run: --files 5000 --detect-trials 1 --runs 3
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomFillSync, randomInt } from 'node:crypto';
import { appendFileSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type BetterSqlite3 from 'better-sqlite3';
import { DefaultAuditMs } from '../src-main/engine/objects/folder/replica.js';
import type { AuditOutcome, EventRecord, ObjectStatus } from '../src-main/contract/control.js';
import { CliPath, freePortPair, sleep, startPair, TestNode, waitFor } from '../test/support/harness.js';
import { distribution, printTable, writeResults } from './stats.js';
import { canConnect, checkNoise, kib, KiB, mib, MiB, option, peakRssMiB, engineVersion, fail, failures, log, machineNoise, nodeDiagnostics, note, notes, ownPids, ratio, run, which } from './support.js';

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;

// ---------------------------------------------------------------------------------------------
// Options and constants


function textOption(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = process.argv[i + 1];
  if (!value || value.startsWith('--')) throw new Error(`--${name} needs a value`);
  return value;
}

/** Where the bench's private root goes (the data, and the nodes' homes). */
const baseDir = textOption('dir', '/var/tmp');

const settings = {
  files: option('files', 100_000),
  runs: option('runs', 5),
  detectTrials: option('detect-trials', 3),
  bigMiB: option('big-mib', 64),
  dbMiB: option('db-mib', 20),
  blocks: option('blocks', 8),
  pages: option('pages', 50),
};

/** The engine's delta block size (BlockSize in src-main/engine/objects/folder/replica.ts). */
const EngineBlock = 16 * KiB;
const PageSize = 4096;
/** The continuous audit's period at default settings. */
const CycleMs = DefaultAuditMs;
const FilesPerFolder = 100;
const Goals = { auditMs: 10_000, auditBytes: 5 * MiB, detectMs: 60_000, repairRatio: 1.1 };
const AuditEvents = /audit\.|error|refused|skipped|sqlite\./;



function seconds(ms: number | null): string {
  return ms === null ? '' : `${(ms / 1000).toFixed(2)} s`;
}

// ---------------------------------------------------------------------------------------------
// rsync: the daemon on loopback (as in bench/folder.ts) and its --stats

function ensureRsync(): string | null {
  let rsync = which('rsync');
  if (rsync) return rsync;
  if (process.getuid?.() !== 0) return null;
  log('rsync is not installed: installing it with apt-get install -y rsync');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update'], { encoding: 'utf8', env });
  if (update.status === 0) spawnSync('apt-get', ['install', '-y', 'rsync'], { encoding: 'utf8', env });
  rsync = which('rsync');
  return rsync ?? null;
}


class RsyncDaemon {
  private child: ChildProcess | null = null;
  private output = '';
  port = 0;

  constructor(
    private readonly rsync: string,
    private readonly dir: string,
    private readonly modules: Record<string, string>,
  ) {}

  async start(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    this.port = await freePortPair();
    const config = join(this.dir, 'rsyncd.conf');
    const uid = process.getuid?.() === 0 ? 'uid = root\ngid = root\n' : '';
    const modules = Object.entries(this.modules).map(([name, path]) => `[${name}]\n  path = ${path}\n  read only = no\n`);
    writeFileSync(config, `pid file = ${join(this.dir, 'rsyncd.pid')}\nlog file = ${join(this.dir, 'rsyncd.log')}\nuse chroot = no\n${uid}\n${modules.join('\n')}`);
    const child = spawn(this.rsync, ['--daemon', '--no-detach', `--config=${config}`, `--port=${this.port}`, '--address=127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    if (child.pid) ownPids.add(child.pid);
    child.stdout.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    await waitFor(
      'the rsync daemon to listen',
      async () => {
        if (child.exitCode !== null) throw new Error(`rsync --daemon exited ${child.exitCode}: ${this.output}`);
        return (await canConnect(this.port)) ? true : undefined;
      },
      10_000,
      50,
    );
  }

  url(module: string): string {
    return `rsync://127.0.0.1:${this.port}/${module}/`;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(3000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** A number from rsync --stats (digits grouped with commas, or K/M/G). */
function rsyncStat(output: string, label: string): number {
  const match = new RegExp(`${label}:\\s*([\\d.,]+)([KMGT]?)`).exec(output);
  if (!match) throw new Error(`no '${label}' in rsync --stats output: ${output.slice(-400)}`);
  const scale = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 }[match[2] ?? ''] ?? 1;
  return Math.round(Number(match[1]!.replace(/,/g, '')) * scale);
}

interface RsyncRun {
  ms: number;
  sent: number;
  received: number;
  bytes: number;
  /** "Number of regular files transferred": 0 when the two trees agree on size and mtime. */
  transferred: number;
  /** Deletions rsync would make (itemized lines starting with "*deleting"). */
  deletions: number;
  overlapped: string[];
}

// ---------------------------------------------------------------------------------------------
// Data

/** --files files of 1-4 KiB, 100 a folder: slices of a random pool, 32 writes in flight, so generating is quick. */
async function generateTree(root: string): Promise<{ files: number; bytes: number; paths: string[] }> {
  const pool = randomBytes(16 * MiB);
  const folders = Math.ceil(settings.files / FilesPerFolder);
  const folder = (i: number) => `d${String(Math.floor(i / FilesPerFolder)).padStart(4, '0')}`;
  for (let f = 0; f < folders; f++) mkdirSync(join(root, folder(f * FilesPerFolder)), { recursive: true });
  const paths = Array.from({ length: settings.files }, (_, i) => `${folder(i)}/f${String(i).padStart(6, '0')}.txt`);
  let bytes = 0;
  let next = 0;
  const writer = async () => {
    while (next < paths.length) {
      const path = paths[next++]!;
      const size = randomInt(1 * KiB, 4 * KiB + 1);
      const at = randomInt(0, pool.length - size);
      bytes += size;
      await writeFile(join(root, path), pool.subarray(at, at + size));
    }
  };
  await Promise.all(Array.from({ length: 32 }, writer));
  return { files: settings.files, bytes, paths };
}

function writeRandomFile(path: string, bytes: number): void {
  const chunk = Buffer.allocUnsafe(4 * MiB);
  const fd = openSync(path, 'w');
  try {
    for (let at = 0; at < bytes; ) {
      const n = Math.min(chunk.length, bytes - at);
      randomFillSync(chunk, 0, n);
      at += writeSync(fd, chunk, 0, n, at);
    }
  } finally {
    closeSync(fd);
  }
}

/** A WAL database of about --db-mib MiB, page size 4096, checkpointed and closed. */
function generateDatabase(path: string): { pages: number; bytes: number } {
  const db = new Database(path);
  try {
    db.pragma(`page_size = ${PageSize}`);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE items(id INTEGER PRIMARY KEY, body BLOB NOT NULL)');
    const insert = db.prepare('INSERT INTO items(body) VALUES (?)');
    const batch = db.transaction((n: number) => {
      for (let i = 0; i < n; i++) insert.run(randomBytes(randomInt(500, 3000)));
    });
    while (Number(db.pragma('page_count', { simple: true })) * PageSize < settings.dbMiB * MiB) batch(500);
    db.pragma('wal_checkpoint(TRUNCATE)');
    const pages = Number(db.pragma('page_count', { simple: true }));
    return { pages, bytes: pages * PageSize };
  } finally {
    db.close();
  }
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** integrity_check and a SHA-256 of every row, read-only. */
function databaseDigest(path: string): { integrity: string; rows: number; sha256: string } {
  const db = new Database(path, { readonly: true });
  try {
    const integrity = String(db.pragma('integrity_check', { simple: true }));
    const hash = createHash('sha256');
    let rows = 0;
    for (const row of db.prepare('SELECT id, body FROM items ORDER BY id').iterate() as Iterable<{ id: number; body: Buffer }>) {
      hash.update(`${row.id}:`).update(row.body);
      rows += 1;
    }
    return { integrity, rows, sha256: hash.digest('hex') };
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The nodes

interface Traffic {
  /** The backup's linkBytes: sent = backup -> primary, received = primary -> backup. */
  sent: number;
  received: number;
}

async function linkBytes(backup: TestNode): Promise<Traffic> {
  const peer = (await backup.status()).peers[0];
  if (!peer) throw new Error('the backup has no peer');
  if (!peer.linkBytes) throw new Error("the backup's status has no peers[0].linkBytes (an engine without the field?)");
  return { sent: peer.linkBytes.sent, received: peer.linkBytes.received };
}

function trafficDelta(before: Traffic, after: Traffic): Traffic & { total: number } {
  const sent = after.sent - before.sent;
  const received = after.received - before.received;
  if (sent < 0 || received < 0) throw new Error('the linkBytes counters went back (did the backup restart?)');
  return { sent, received, total: sent + received };
}

function progressText(status: ObjectStatus | undefined): string {
  if (!status) return 'no status';
  const p = status.progress;
  return `${status.state}, pending ${status.pending}${p ? `, files ${p.filesDone}/${p.files}, ${mib(p.bytesDone)}/${mib(p.bytes)}` : ''}${status.error ? `, error ${status.error}` : ''}`;
}

async function protect(primary: TestNode, kind: 'folder' | 'sqlite', source: string, target: string): Promise<string> {
  const result = await primary.cli('protect', kind, source, '--to', target);
  if (result.code !== 0) throw new Error(`protect ${kind} ${source}: ${result.stderr.trim()}`);
  return result.stdout.trim().split('\n').at(-1)!;
}

/** Waits until every object is in-sync with pending 0 on the primary; logs progress every 5 s; fails when nothing moved for 3 min. */
async function waitAllInSync(primary: TestNode, ids: Map<string, string>, what: string): Promise<number> {
  const started = performance.now();
  let lastProgress = '';
  let progressAt = performance.now();
  let loggedAt = 0;
  for (;;) {
    const objects = (await primary.status()).objects;
    const mine = [...ids].map(([name, id]) => [name, objects.find((o) => o.id === id)] as const);
    const broken = mine.find(([, o]) => o?.state === 'error');
    if (broken) throw new Error(`${broken[0]} is in error: ${broken[1]?.error ?? ''}`);
    if (mine.every(([, o]) => o?.state === 'in-sync' && o.pending === 0)) return performance.now() - started;
    const text = mine.map(([name, o]) => `${name}: ${progressText(o)}`).join('; ');
    const now = performance.now();
    if (text !== lastProgress) {
      lastProgress = text;
      progressAt = now;
    }
    if (now - loggedAt > 5000) {
      log(`${what}: ${((now - started) / 1000).toFixed(0)} s — ${text}`);
      loggedAt = now;
    }
    if (now - progressAt > 180_000) throw new Error(`no progress for 3 min waiting for ${what}: ${text}`);
    if (now - started > 30 * 60_000) throw new Error(`timed out after 30 min waiting for ${what}: ${text}`);
    await sleep(250);
  }
}

interface CliAudit {
  wallMs: number;
  code: number | null;
  outcome: AuditOutcome | null;
  stderr: string;
}

/** `understudy audit ID [--scrub] --json --home HOME` as an admin runs it: timed from spawn to exit. */
async function auditCli(node: TestNode, id: string, scrub: boolean): Promise<CliAudit> {
  const result = await run(process.execPath, [CliPath, 'audit', id, ...(scrub ? ['--scrub'] : []), '--json', '--home', node.home], 20 * 60_000);
  let outcome: AuditOutcome | null = null;
  try {
    outcome = (JSON.parse(result.stdout) as { objects: AuditOutcome[] }).objects.find((o) => o.id === id) ?? null;
  } catch {
    outcome = null;
  }
  return { wallMs: result.ms, code: result.code, outcome, stderr: result.stderr.trim() };
}


// ---------------------------------------------------------------------------------------------
// The audits the backup runs by itself: seen through its status, so timed runs can keep clear

interface SeenAudit {
  object: string;
  at: string;
  startMs: number;
  endMs: number;
  ms: number;
  scope: string;
  result: string;
  differences: number;
}

class AuditWatch {
  readonly seen: SeenAudit[] = [];
  private readonly latest = new Map<string, string>();
  /** `${object} ${at}` of the audits this bench asked for. */
  private readonly ours = new Set<string>();
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly backup: TestNode,
    private readonly names: Map<string, string>,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          for (const o of (await this.backup.status()).objects) {
            const a = o.lastAudit;
            if (!a || this.latest.get(o.id) === a.at) continue;
            this.latest.set(o.id, a.at);
            const endMs = Date.parse(a.at);
            this.seen.push({ object: o.id, at: a.at, startMs: endMs - a.ms, endMs, ms: a.ms, scope: a.scope, result: a.result, differences: a.differences });
          }
        } catch {
          // the node is busy or going away: try again
        }
        await sleep(500);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  mine(outcome: AuditOutcome | null): void {
    if (outcome) this.ours.add(`${outcome.id} ${outcome.at}`);
  }

  name(object: string): string {
    return this.names.get(object) ?? object;
  }

  /** The audits the backup ran by itself (all but ours), of one object or of all. */
  continuous(object?: string): SeenAudit[] {
    return this.seen.filter((a) => !this.ours.has(`${a.object} ${a.at}`) && (object === undefined || a.object === object));
  }

  /** The latest continuous audit of the object (its start is the phase of the 60 s timer), and the longest seen. */
  phase(object: string): { startMs: number; longestMs: number } | null {
    const seen = this.continuous(object);
    if (seen.length === 0) return null;
    return { startMs: seen.at(-1)!.startMs, longestMs: Math.max(...seen.map((a) => a.ms)) };
  }

  /** The continuous audits of any object that ran during [fromMs, toMs] (wall clock). */
  overlapping(fromMs: number, toMs: number): string[] {
    return this.continuous()
      .filter((a) => a.startMs < toMs && a.endMs > fromMs)
      .map((a) => `${this.name(a.object)} (${a.scope}, ${a.ms} ms, ${a.result})`);
  }

  /** When a continuous audit runs or is due within [now, now + needMs]: the time it should be over; null when the window is quiet. */
  busyUntil(needMs: number): number | null {
    const now = Date.now();
    let until: number | null = null;
    for (const object of this.names.keys()) {
      const p = this.phase(object);
      if (!p) continue;
      const span = p.longestMs + 2000;
      const first = Math.max(0, Math.floor((now - p.startMs - span) / CycleMs));
      for (let k = first; k < first + 4; k++) {
        const start = p.startMs + k * CycleMs;
        let end = start + span;
        // Due, and not seen yet: it may still be running (or was skipped); give it a while longer.
        if (k > 0 && start <= now && !this.continuous(object).some((a) => a.startMs >= start - 3000)) end = Math.max(end, start + 3 * p.longestMs + 10_000);
        if (start - 1000 < now + needMs && end > now) until = Math.max(until ?? 0, end);
      }
    }
    return until;
  }

  /** Waits for a window of needMs with no continuous audit in it: at most one cycle (the pattern repeats after that). */
  async quiet(needMs: number, what: string): Promise<void> {
    const deadline = Date.now() + CycleMs + 5000;
    for (;;) {
      const until = this.busyUntil(needMs);
      if (until === null) return;
      if (Date.now() > deadline) {
        note(`${what}: no quiet window of ${Math.round(needMs / 1000)} s between continuous audits found; measured anyway`);
        return;
      }
      const wait = Math.min(until - Date.now(), deadline - Date.now());
      if (wait > 1000) log(`${what}: waiting ${(wait / 1000).toFixed(1)} s for a continuous audit to pass`);
      await sleep(Math.max(200, wait));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The measurements

interface AuditRun {
  wallMs: number;
  reportedMs: number | null;
  result: string | null;
  differences: number | null;
  bytes: Traffic & { total: number };
  overlapped: string[];
}

interface DetectTrial {
  path: string;
  /** Where in the 60 s cycle of the tree's continuous audit the edit landed (ms after its start), when known. */
  phaseMs: number | null;
  detectMs: number | null;
  eventMessage: string | null;
  repairedOk: boolean | null;
}

interface RepairResult {
  what: string;
  expectedBytes: number;
  damaged: number[];
  bytes: (Traffic & { total: number }) | null;
  ratio: number | null;
  wallMs: number | null;
  outcome: AuditOutcome | null;
  copyMatches: boolean | null;
  attempts: number;
  overlapped: string[];
  detail: string | null;
}

async function measureAudits(
  primary: TestNode,
  backup: TestNode,
  watch: AuditWatch,
  id: string,
  daemon: RsyncDaemon | null,
  rsync: string | null,
  source: string,
): Promise<{ ours: AuditRun[]; rsyncRuns: RsyncRun[] }> {
  const ours: AuditRun[] = [];
  const rsyncRuns: RsyncRun[] = [];
  let need = 15_000;
  let rsyncNeed = 5000;
  for (let r = 0; r < settings.runs; r++) {
    await watch.quiet(need, `audit run ${r + 1}`);
    checkNoise(`audit run ${r + 1}`);
    try {
      const before = await linkBytes(backup);
      const from = Date.now();
      const result = await auditCli(primary, id, false);
      const to = Date.now();
      const after = await linkBytes(backup);
      watch.mine(result.outcome);
      const entry: AuditRun = {
        wallMs: Math.round(result.wallMs),
        reportedMs: result.outcome?.ms ?? null,
        result: result.outcome?.result ?? null,
        differences: result.outcome?.differences ?? null,
        bytes: trafficDelta(before, after),
        overlapped: [],
      };
      await sleep(600); // one more status poll of the watcher
      entry.overlapped = watch.overlapping(from, to);
      ours.push(entry);
      if (result.code !== 0 || result.outcome?.result !== 'clean') fail(`audit run ${r + 1}`, new Error(`exit ${result.code}, outcome ${JSON.stringify(result.outcome)}: ${result.stderr}`));
      log(`audit ${r + 1}/${settings.runs}: ${seconds(entry.wallMs)} wall, reports ${entry.reportedMs} ms, ${entry.result}; ${entry.bytes.total} B on the data link${entry.overlapped.length > 0 ? `; overlapped ${entry.overlapped.join(', ')}` : ''}`);
      need = Math.max(15_000, 1.5 * entry.wallMs);
    } catch (error) {
      fail(`audit run ${r + 1}`, error);
    }
    if (!daemon || !rsync) continue;
    await watch.quiet(rsyncNeed, `rsync run ${r + 1}`);
    checkNoise(`rsync run ${r + 1}`);
    try {
      const from = Date.now();
      const result = await run(rsync, ['-a', '--dry-run', '--delete', '--stats', '--itemize-changes', `${source}/`, daemon.url('tree')]);
      const to = Date.now();
      if (result.code !== 0) throw new Error(`rsync exited ${result.code}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      const sent = rsyncStat(result.stdout, 'Total bytes sent');
      const received = rsyncStat(result.stdout, 'Total bytes received');
      await sleep(600);
      const entry: RsyncRun = {
        ms: Math.round(result.ms),
        sent,
        received,
        bytes: sent + received,
        transferred: rsyncStat(result.stdout, 'Number of regular files transferred'),
        deletions: result.stdout.split('\n').filter((line) => line.startsWith('*deleting')).length,
        overlapped: watch.overlapping(from, to),
      };
      rsyncRuns.push(entry);
      rsyncNeed = Math.max(5000, 3 * entry.ms);
      log(`rsync -n ${r + 1}/${settings.runs}: ${seconds(entry.ms)}, ${entry.bytes} B (sent ${sent}, received ${received}), ${entry.transferred} files to transfer, ${entry.deletions} to delete${entry.overlapped.length > 0 ? `; overlapped ${entry.overlapped.join(', ')}` : ''}`);
      if (entry.transferred > 0 || entry.deletions > 0) note(`rsync run ${r + 1} found ${entry.transferred} file(s) to transfer and ${entry.deletions} to delete: the copy differs from the source by size or mtime`);
    } catch (error) {
      fail(`rsync run ${r + 1}`, error);
    }
  }
  return { ours, rsyncRuns };
}

async function measureDetection(backup: TestNode, watch: AuditWatch, id: string, source: string, copy: string, paths: string[]): Promise<DetectTrial[]> {
  const trials: DetectTrial[] = [];
  for (let i = 0; i < settings.detectTrials; i++) {
    const path = paths[randomInt(0, paths.length)]!;
    const trial: DetectTrial = { path, phaseMs: null, detectMs: null, eventMessage: null, repairedOk: null };
    try {
      // The edit lands at (i + u)/N of the cycle after a start of the tree's continuous audit.
      const p = watch.phase(id);
      if (p) {
        const offset = ((i + Math.random()) / settings.detectTrials) * CycleMs;
        let target = p.startMs + offset;
        while (target < Date.now() + 1000) target += CycleMs;
        log(`detection ${i + 1}/${settings.detectTrials}: editing ${path} on the backup in ${((target - Date.now()) / 1000).toFixed(1)} s (${(offset / 1000).toFixed(1)} s into the audit cycle)`);
        await sleep(target - Date.now());
      } else {
        note('detection: no continuous audit of the tree seen yet: the edit lands at a random moment');
        await sleep(Math.random() * CycleMs);
      }
      const since = backup.events.length;
      const editedAt = Date.now();
      appendFileSync(join(copy, path), 'a line added by hand on the backup\n');
      const now = watch.phase(id);
      if (now) trial.phaseMs = (((editedAt - now.startMs) % CycleMs) + CycleMs) % CycleMs;
      const event = await waitFor<EventRecord>(
        `the backup's audit.repaired for the tree after editing ${path}`,
        () => backup.events.slice(since).find((e) => e.type === 'audit.repaired' && e.object === id),
        2 * CycleMs + 60_000,
        20,
      );
      trial.detectMs = Date.parse(event.at) - editedAt;
      trial.eventMessage = event.message;
      if (!event.message.includes(path)) note(`detection ${i + 1}: the repair event does not name ${path}: ${event.message}`);
      trial.repairedOk = await waitFor('the edited file put back', () => (readFileSync(join(copy, path)).equals(readFileSync(join(source, path))) ? true : undefined), 10_000, 50).catch(() => false);
      if (!trial.repairedOk) fail(`detection ${i + 1}`, new Error(`${path} on the backup differs from the source after the repair`));
      log(`detection ${i + 1}/${settings.detectTrials}: audit.repaired ${seconds(trial.detectMs)} after the edit (edit ${trial.phaseMs === null ? '?' : (trial.phaseMs / 1000).toFixed(1)} s into the cycle)`);
    } catch (error) {
      fail(`detection ${i + 1}`, error);
    }
    trials.push(trial);
  }
  return trials;
}

/** Damages the copy (damage() returns what it damaged), audits, and counts the backup's linkBytes across both; retries once when another audit overlapped. */
async function measureRepair(
  what: string,
  primary: TestNode,
  backup: TestNode,
  watch: AuditWatch,
  id: string,
  scrub: boolean,
  expectedBytes: number,
  damage: () => number[],
  check: () => boolean,
): Promise<RepairResult> {
  const result: RepairResult = { what, expectedBytes, damaged: [], bytes: null, ratio: null, wallMs: null, outcome: null, copyMatches: null, attempts: 0, overlapped: [], detail: null };
  for (let attempt = 1; attempt <= 2; attempt++) {
    result.attempts = attempt;
    await watch.quiet(10_000, what);
    checkNoise(what);
    const before = await linkBytes(backup);
    const from = Date.now();
    result.damaged = damage();
    const audit = await auditCli(primary, id, scrub);
    const to = Date.now();
    const after = await linkBytes(backup);
    watch.mine(audit.outcome);
    await sleep(600);
    result.bytes = trafficDelta(before, after);
    result.ratio = ratio(result.bytes.total, expectedBytes);
    result.wallMs = Math.round(audit.wallMs);
    result.outcome = audit.outcome;
    result.overlapped = watch.overlapping(from, to);
    result.copyMatches = check();
    log(
      `${what}: ${result.bytes.total} B on the data link (backup sent ${result.bytes.sent}, received ${result.bytes.received}) for ${expectedBytes} B expected = ${result.ratio}; ` +
        `audit ${audit.outcome?.result ?? 'no outcome'} (${audit.outcome?.differences ?? '?'} difference(s)) in ${seconds(result.wallMs)}; copy ${result.copyMatches ? 'matches the source' : 'DIFFERS from the source'}` +
        `${result.overlapped.length > 0 ? `; overlapped ${result.overlapped.join(', ')}` : ''}`,
    );
    if (audit.code !== 0 || !audit.outcome) {
      result.detail = `audit exited ${audit.code}: ${audit.stderr}`;
      fail(what, new Error(result.detail));
    }
    if (!result.copyMatches) fail(what, new Error('the copy differs from the source after the audit'));
    if (result.overlapped.length === 0 || attempt === 2) break;
    note(`${what}: a continuous audit ran during the measurement (${result.overlapped.join(', ')}): measured again`);
  }
  if (result.overlapped.length > 0) note(`${what}: a continuous audit overlapped the measurement again; its bytes are included`);
  return result;
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = Date.now();
  const engine = engineVersion();
  if (process.platform !== 'linux') throw new Error('bench:audit needs Linux (/proc)');
  for (const name of ['UNDERSTUDY_RESCAN_MS', 'UNDERSTUDY_SCRUB_SLICE_BYTES']) {
    if (process.env[name] === undefined) continue;
    note(`${name}=${process.env[name]} removed from the nodes' environment: the bench measures the defaults`);
    delete process.env[name];
  }
  const rsync = ensureRsync();
  if (!rsync) note('rsync is not installed (and this is not root to install it): the anchor is not measured');
  const rsyncVersion = rsync ? ((await run(rsync, ['--version'])).stdout.split('\n')[0] ?? '') : 'n/a';
  log(`bench:audit: ${settings.files} files, ${settings.runs} runs, ${settings.detectTrials} detection trials; engine ${engine}; ${rsyncVersion}`);

  // One private root for everything (the data, rsync's config, and — through TMPDIR, which
  // tempDir() reads — the nodes' homes): one rm cleans up, and a sweep of /tmp/understudy-* by a
  // test run on the same machine cannot remove a directory from under the bench mid-run.
  mkdirSync(baseDir, { recursive: true });
  const work = mkdtempSync(join(baseDir, 'understudy-bench-audit-'));
  process.env.TMPDIR = work;
  if (tmpdir() !== work) throw new Error(`os.tmpdir() does not follow TMPDIR=${work}`);
  const cleanups: (() => Promise<void> | void)[] = [
    () => {
      if (!process.env.UNDERSTUDY_KEEP_TEST_HOMES) rmSync(work, { recursive: true, force: true });
      else console.log(`kept ${work}`);
    },
  ];
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
  let watch: AuditWatch | null = null;

  try {
    // ----- data
    const src = { tree: join(work, 'src', 'tree'), big: join(work, 'src', 'big'), db: join(work, 'src', 'shop.db') };
    const dst = { tree: join(work, 'backup', 'tree'), big: join(work, 'backup', 'big'), db: join(work, 'backup', 'shop.db') };
    mkdirSync(src.tree, { recursive: true });
    mkdirSync(src.big, { recursive: true });
    mkdirSync(join(work, 'backup'), { recursive: true });
    let t = performance.now();
    const tree = await generateTree(src.tree);
    log(`generated ${tree.files} files (${mib(tree.bytes)}) in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    const bigBytes = settings.bigMiB * MiB;
    writeRandomFile(join(src.big, 'big.bin'), bigBytes);
    t = performance.now();
    const dbInfo = generateDatabase(src.db);
    log(`generated a ${mib(bigBytes)} file and a ${mib(dbInfo.bytes)} database (${dbInfo.pages} pages of ${PageSize} B) in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    // ----- the nodes (default settings) and the three objects
    const [primary, backup] = await startPair();
    nodes.push(primary, backup);
    cleanups.push(() => Promise.all(nodes.map((node) => node.destroy())).then(() => undefined));
    ownPids.add(primary.pid).add(backup.pid);
    t = performance.now();
    const ids = { tree: await protect(primary, 'folder', src.tree, dst.tree), big: await protect(primary, 'folder', src.big, dst.big), db: await protect(primary, 'sqlite', src.db, dst.db) };
    const names = new Map([
      [ids.tree, 'tree'],
      [ids.big, 'big file'],
      [ids.db, 'database'],
    ]);
    log(`protected: tree ${ids.tree}, big file ${ids.big}, database ${ids.db}; waiting for the initial sync...`);
    const syncMs = await waitAllInSync(primary, new Map([...names].map(([id, name]) => [name, id])), 'initial sync');
    log(`all three in-sync with pending 0 after ${seconds(syncMs)}`);
    const dbCopy = await waitFor('the database copy to match the source', () => {
      try {
        const [a, b] = [databaseDigest(src.db), databaseDigest(dst.db)];
        return a.sha256 === b.sha256 ? b : undefined;
      } catch {
        return undefined;
      }
    }, 30_000, 200);
    log(`database copy: ${dbCopy.rows} rows, integrity ${dbCopy.integrity}`);

    // ----- the continuous audits' phase: one of each object seen before anything is timed
    watch = new AuditWatch(backup, names);
    watch.start();
    cleanups.push(() => watch?.stop());
    log(`waiting for a continuous audit of each object (they run every ${CycleMs / 1000} s on the backup)...`);
    await waitFor('a continuous audit of each object', () => ([...names.keys()].every((id) => watch!.phase(id) !== null) ? true : undefined), 2 * CycleMs + 30_000, 250).catch((error: unknown) => {
      note(`not every object's continuous audit was seen (${String(error)}): timed runs may overlap one`);
    });
    for (const [id, name] of names) {
      const seen = watch.continuous(id).at(-1);
      if (seen) log(`continuous audit of the ${name}: ${seen.scope}, ${seen.ms} ms, ${seen.result}`);
    }
    const badContinuous = watch.continuous().filter((a) => a.result !== 'clean');
    if (badContinuous.length > 0) note(`continuous audits before any damage were not clean: ${badContinuous.map((a) => `${watch!.name(a.object)} ${a.result} (${a.differences})`).join(', ')}`);

    // ----- idle traffic on the data link, as the floor of every byte count below
    await watch.quiet(12_000, 'idle traffic');
    const idleBefore = await linkBytes(backup);
    await sleep(10_000);
    const idle = trafficDelta(idleBefore, await linkBytes(backup));
    log(`idle data-link traffic: ${idle.total} B in 10 s`);

    // ----- 1. audits of the unchanged tree, rsync interleaved
    let daemon: RsyncDaemon | null = null;
    if (rsync) {
      daemon = new RsyncDaemon(rsync, join(work, 'rsyncd'), { tree: dst.tree });
      await daemon.start();
      const started = daemon;
      cleanups.push(() => started.stop());
      log(`rsync daemon on 127.0.0.1:${daemon.port}, module 'tree' = the backup's copy`);
    }
    const { ours, rsyncRuns } = await measureAudits(primary, backup, watch, ids.tree, daemon, rsync, src.tree);

    // ----- context: a scrub of the tree, and rsync --checksum
    let scrub: AuditRun | null = null;
    let rsyncChecksum: RsyncRun | null = null;
    try {
      await watch.quiet(25_000, 'scrub');
      checkNoise('scrub');
      const before = await linkBytes(backup);
      const from = Date.now();
      const result = await auditCli(primary, ids.tree, true);
      const to = Date.now();
      const after = await linkBytes(backup);
      watch.mine(result.outcome);
      await sleep(600);
      scrub = { wallMs: Math.round(result.wallMs), reportedMs: result.outcome?.ms ?? null, result: result.outcome?.result ?? null, differences: result.outcome?.differences ?? null, bytes: trafficDelta(before, after), overlapped: watch.overlapping(from, to) };
      if (result.code !== 0 || result.outcome?.result !== 'clean') fail('audit --scrub', new Error(`exit ${result.code}, outcome ${JSON.stringify(result.outcome)}: ${result.stderr}`));
      log(`audit --scrub: ${seconds(scrub.wallMs)} wall, reports ${scrub.reportedMs} ms (${result.outcome?.scope ?? '?'}), ${scrub.result}; ${scrub.bytes.total} B`);
    } catch (error) {
      fail('audit --scrub', error);
    }
    if (daemon && rsync) {
      try {
        await watch.quiet(Math.max(5000, ...rsyncRuns.map((r) => 10 * r.ms)), 'rsync --checksum');
        checkNoise('rsync --checksum');
        const from = Date.now();
        const result = await run(rsync, ['-a', '--dry-run', '--delete', '--checksum', '--stats', `${src.tree}/`, daemon.url('tree')]);
        const to = Date.now();
        if (result.code !== 0) throw new Error(`rsync exited ${result.code}: ${result.stderr.trim()}`);
        const sent = rsyncStat(result.stdout, 'Total bytes sent');
        const received = rsyncStat(result.stdout, 'Total bytes received');
        await sleep(600);
        rsyncChecksum = { ms: Math.round(result.ms), sent, received, bytes: sent + received, transferred: rsyncStat(result.stdout, 'Number of regular files transferred'), deletions: 0, overlapped: watch.overlapping(from, to) };
        log(`rsync -n --checksum: ${seconds(rsyncChecksum.ms)}, ${rsyncChecksum.bytes} B, ${rsyncChecksum.transferred} files differ`);
      } catch (error) {
        fail('rsync --checksum', error);
      }
    }

    // ----- 3a. 8 flipped bytes in 8 blocks of the big file
    const bigCopy = join(dst.big, 'big.bin');
    const bigSource = sha256File(join(src.big, 'big.bin'));
    const blocks = Math.ceil(bigBytes / EngineBlock);
    const flip = (): number[] => {
      const chosen = new Set<number>();
      while (chosen.size < Math.min(settings.blocks, blocks)) chosen.add(randomInt(0, blocks));
      const stat = statSync(bigCopy);
      const fd = openSync(bigCopy, 'r+');
      try {
        for (const block of chosen) {
          const at = block * EngineBlock + randomInt(0, EngineBlock);
          const byte = Buffer.alloc(1);
          readSync(fd, byte, 0, 1, at);
          byte[0] = byte[0]! ^ 0xff;
          writeSync(fd, byte, 0, 1, at);
        }
      } finally {
        closeSync(fd);
      }
      utimesSync(bigCopy, stat.atime, stat.mtime);
      return [...chosen].sort((a, b) => a - b);
    };
    const blockRepair = await measureRepair(
      `repair ${settings.blocks} flipped bytes in ${settings.blocks} blocks of the ${settings.bigMiB} MiB file`,
      primary,
      backup,
      watch,
      ids.big,
      true,
      settings.blocks * EngineBlock,
      flip,
      () => sha256File(bigCopy) === bigSource,
    ).catch((error: unknown) => {
      fail('block repair', error);
      return null;
    });

    // ----- 3b. 50 overwritten pages of the database
    const walBytes = existsSync(`${dst.db}-wal`) ? statSync(`${dst.db}-wal`).size : 0;
    const copyPages = Math.floor(statSync(dst.db).size / PageSize);
    log(`database copy: ${copyPages} pages in the main file, its -wal ${walBytes} B`);
    const sourceDigest = databaseDigest(src.db);
    const overwrite = (): number[] => {
      const chosen = new Set<number>();
      while (chosen.size < Math.min(settings.pages, copyPages - 1)) chosen.add(randomInt(2, copyPages + 1));
      const fd = openSync(dst.db, 'r+');
      try {
        for (const page of chosen) writeSync(fd, randomBytes(PageSize), 0, PageSize, (page - 1) * PageSize);
      } finally {
        closeSync(fd);
      }
      return [...chosen].sort((a, b) => a - b);
    };
    const pageRepair = await measureRepair(
      `repair ${settings.pages} overwritten pages of the ${settings.dbMiB} MiB database`,
      primary,
      backup,
      watch,
      ids.db,
      false,
      settings.pages * PageSize,
      overwrite,
      () => {
        const copy = databaseDigest(dst.db);
        return copy.integrity === 'ok' && copy.sha256 === sourceDigest.sha256;
      },
    ).catch((error: unknown) => {
      fail('page repair', error);
      return null;
    });

    // ----- 2. detection of a hand edit by the continuous audit
    const detect = await measureDetection(backup, watch, ids.tree, src.tree, dst.tree, tree.paths);

    await watch.stop();
    const rss = { primaryMiB: peakRssMiB(primary.pid), backupMiB: peakRssMiB(backup.pid) };
    const diagnostics = failures.length > 0 ? nodes.map((node) => nodeDiagnostics(node, AuditEvents)).join('\n\n') : null;

    // ----- report
    const wall = distribution(ours.map((r) => r.wallMs / 1000), 2);
    const reported = distribution(ours.flatMap((r) => (r.reportedMs === null ? [] : [r.reportedMs / 1000])), 2);
    const bytes = distribution(ours.map((r) => r.bytes.total), 0);
    const rsyncWall = distribution(rsyncRuns.map((r) => r.ms / 1000), 2);
    const rsyncBytes = distribution(rsyncRuns.map((r) => r.bytes), 0);
    const detected = detect.flatMap((d) => (d.detectMs === null ? [] : [d.detectMs / 1000]));
    const detection = distribution(detected, 1);
    const num = (value: number | null, unit = '') => (value === null ? '' : `${value}${unit}`);
    const bytesText = (value: number | null) => (value === null ? '' : value >= 100 * KiB ? kib(value) : `${value} B`);
    const verdict = (value: number | null, goal: number, complete: boolean, strict = false) =>
      !complete || value === null ? 'FAILED' : (strict ? value < goal : value <= goal) ? 'met' : 'missed';
    const timeRatio = ratio(wall.p50, rsyncWall.p50);
    const bytesRatio = ratio(bytes.p50, rsyncBytes.p50);
    const allClean = ours.length === settings.runs && ours.every((r) => r.result === 'clean');
    const repairRow = (r: RepairResult | null, measure: string, expected: string): Record<string, string | number> => ({
      measure,
      runs: r ? 1 : 0,
      p50: r?.bytes ? `${r.bytes.total} B` : 'FAILED',
      'p99/max': r?.bytes ? `${r.bytes.total} B` : '',
      goal: `<= ${Goals.repairRatio} x expected`,
      result: !r || r.ratio === null || !r.copyMatches ? 'FAILED' : r.ratio <= Goals.repairRatio ? 'met' : 'missed',
      anchor: expected,
      ratio: r?.ratio ?? '',
    });
    const rows: Record<string, string | number>[] = [
      {
        measure: `audit of ${tree.files} unchanged files, wall time of the command`,
        runs: wall.n,
        p50: num(wall.p50, ' s'),
        'p99/max': num(wall.max, ' s'),
        goal: `< ${Goals.auditMs / 1000} s (max)`,
        result: verdict(wall.max === null ? null : wall.max * 1000, Goals.auditMs, allClean, true),
        anchor: rsyncWall.n > 0 ? `rsync -a -n --delete via daemon p50 ${rsyncWall.p50} s (max ${rsyncWall.max})` : 'n/a',
        ratio: timeRatio ?? '',
      },
      {
        measure: '  ms the audit reports (on the backup)',
        runs: reported.n,
        p50: num(reported.p50, ' s'),
        'p99/max': num(reported.max, ' s'),
        goal: '(context)',
        result: '',
        anchor: '',
        ratio: ratio(reported.p50, rsyncWall.p50) ?? '',
      },
      {
        measure: `audit of ${tree.files} unchanged files, bytes on the data link`,
        runs: bytes.n,
        p50: bytesText(bytes.p50),
        'p99/max': bytesText(bytes.max),
        goal: `< ${Goals.auditBytes / MiB} MiB (max)`,
        result: verdict(bytes.max, Goals.auditBytes, allClean, true),
        anchor: rsyncBytes.n > 0 ? `rsync total bytes p50 ${bytesText(rsyncBytes.p50)}` : 'n/a',
        ratio: bytesRatio ?? '',
      },
      {
        measure: '  context: audit --scrub of the same tree, wall time',
        runs: scrub ? 1 : 0,
        p50: scrub ? seconds(scrub.wallMs) : 'FAILED',
        'p99/max': scrub ? `(reports ${seconds(scrub.reportedMs)})` : '',
        goal: '(context)',
        result: '',
        anchor: rsyncChecksum ? `rsync -a -n --checksum ${seconds(rsyncChecksum.ms)}` : 'n/a',
        ratio: scrub && rsyncChecksum ? (ratio(scrub.wallMs, rsyncChecksum.ms) ?? '') : '',
      },
      {
        measure: 'hand edit on the backup -> audit.repaired (defaults)',
        runs: detection.n,
        p50: num(detection.p50, ' s'),
        'p99/max': num(detection.max, ' s'),
        goal: `<= ${Goals.detectMs / 1000} s (max)`,
        result: verdict(detection.max === null ? null : detection.max * 1000, Goals.detectMs, detection.n === settings.detectTrials && detect.every((d) => d.repairedOk)),
        anchor: '',
        ratio: '',
      },
      repairRow(blockRepair, `repair: 1 byte flipped in each of ${settings.blocks} x 16 KiB blocks of ${settings.bigMiB} MiB (--scrub), bytes`, `${settings.blocks} x ${EngineBlock} = ${settings.blocks * EngineBlock} B`),
      repairRow(pageRepair, `repair: ${settings.pages} overwritten pages of a ${mib(dbInfo.bytes)} database, bytes`, `${settings.pages} x ${PageSize} = ${settings.pages * PageSize} B`),
    ];
    console.log('');
    printTable(rows);
    console.log('');
    console.log(`detail: the audits were run on the primary (\`understudy audit ID --json\`, which asks the backup and waits); wall time = spawn to exit of the CLI, including Node's start-up; bytes = delta of the backup's peers[0].linkBytes (sent + received)`);
    console.log(`detail: audit bytes per run (backup sent/received): ${ours.map((r) => `${r.bytes.sent}/${r.bytes.received}`).join(', ')}; idle data link: ${idle.total} B in 10 s`);
    if (rsyncRuns.length > 0) console.log(`detail: rsync per run: ${rsyncRuns.map((r) => `${seconds(r.ms)} ${r.sent}+${r.received} B`).join('; ')}; files to transfer ${rsyncRuns.map((r) => r.transferred).join('/')}, to delete ${rsyncRuns.map((r) => r.deletions).join('/')}`);
    if (scrub) console.log(`detail: scrub bytes ${scrub.bytes.total} B${rsyncChecksum ? `; rsync --checksum ${rsyncChecksum.bytes} B, ${rsyncChecksum.transferred} files differ` : ''}`);
    for (const [r, unit] of [[blockRepair, 'blocks'], [pageRepair, 'pages']] as const) {
      if (!r?.bytes) continue;
      console.log(
        `detail: ${r.what}: backup -> primary ${r.bytes.sent} B, primary -> backup ${r.bytes.received} B (= ${ratio(r.bytes.received, r.expectedBytes)} x expected); ` +
          `audit ${r.outcome?.result ?? '?'}, ${r.outcome?.differences ?? '?'} difference(s), ${r.wallMs} ms wall, reports ${r.outcome?.ms ?? '?'} ms; ${unit} damaged ${r.damaged.join(',')}; attempts ${r.attempts}`,
      );
    }
    console.log(`detail: database copy before the damage: ${copyPages} pages in its main file, -wal ${walBytes} B`);
    for (const [i, d] of detect.entries()) console.log(`detail: detection ${i + 1}: ${d.path} edited ${d.phaseMs === null ? '?' : (d.phaseMs / 1000).toFixed(1)} s into the cycle, repaired after ${d.detectMs === null ? 'FAILED' : seconds(d.detectMs)}`);
    const continuous = watch.continuous();
    for (const [id, name] of names) {
      const seen = continuous.filter((a) => a.object === id);
      if (seen.length > 0) console.log(`detail: continuous audits of the ${name}: ${seen.length} seen, ${seen[0]!.scope}, ${distribution(seen.map((a) => a.ms), 0).p50} ms p50, max ${Math.max(...seen.map((a) => a.ms))} ms`);
    }
    const overlaps = [...ours.map((r, i) => [`audit ${i + 1}`, r.overlapped] as const), ...rsyncRuns.map((r, i) => [`rsync ${i + 1}`, r.overlapped] as const)].filter(([, o]) => o.length > 0);
    if (overlaps.length > 0) console.log(`detail: runs that overlapped a continuous audit: ${overlaps.map(([run, o]) => `${run}: ${o.join(', ')}`).join('; ')}`);
    console.log(`initial sync of the three objects: ${seconds(syncMs)}; peak RSS (VmHWM): primary ${rss.primaryMiB ?? '?'} MiB, backup ${rss.backupMiB ?? '?'} MiB`);
    const totalMs = Date.now() - startedAt;
    console.log(`total run time ${(totalMs / 1000).toFixed(0)} s; engine ${engine}; ${rsyncVersion}; node ${process.version}`);
    for (const text of notes) console.log(`note: ${text}`);

    const path = writeResults('audit', {
      date: new Date().toISOString(),
      settings: { ...settings, engineBlockBytes: EngineBlock, pageSize: PageSize, cycleMs: CycleMs, rsync: rsyncVersion },
      engine,
      versions: { node: process.version },
      goals: Goals,
      data: { files: tree.files, treeBytes: tree.bytes, bigBytes, database: dbInfo, initialSyncMs: Math.round(syncMs) },
      auditUnchanged: {
        wallS: wall,
        reportedS: reported,
        bytes,
        runs: ours,
        anchor: { command: 'rsync -a --dry-run --delete --stats --itemize-changes SRC/ rsync://127.0.0.1:PORT/tree/ (module = the backup copy)', wallS: rsyncWall, bytes: rsyncBytes, runs: rsyncRuns },
        ratioWallP50: timeRatio,
        ratioBytesP50: bytesRatio,
      },
      scrub: { ours: scrub, anchor: rsyncChecksum, ratioWall: scrub && rsyncChecksum ? ratio(scrub.wallMs, rsyncChecksum.ms) : null },
      detection: { seconds: detection, trials: detect },
      repair: { blocks: blockRepair, pages: pageRepair, databaseCopyBefore: { pages: copyPages, walBytes } },
      idleLinkBytes10s: idle,
      continuousAudits: continuous.map((a) => ({ ...a, object: watch!.name(a.object) })),
      peakRss: rss,
      machineNoise,
      totalMs,
      notes,
      failures,
      diagnostics,
    });
    console.log(`\nwrote ${path}`);
    if (failures.length > 0) {
      console.error(`\n!!! ${failures.length} FAILURE(S):\n${failures.map((f) => `  - ${f}`).join('\n')}\n\n${diagnostics ?? ''}`);
      process.exitCode = 1;
    }
  } catch (error) {
    for (const node of nodes) console.error(`\n${nodeDiagnostics(node, AuditEvents)}`);
    throw error;
  } finally {
    await cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`bench:audit: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  if (failures.length > 0) console.error(`earlier failures:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  process.exitCode = 1;
});
