/**
 * npm run bench:folder — folder replication between two real nodes on loopback, with rsync
 * measured side by side in the same run:
 *
 * 1. Initial sync of a tree (default 10,000 files of 1–64 KiB in folders three levels deep,
 *    ~100 files a folder, plus 20 files of 50 MiB), from `protect` until the primary's status
 *    says `in-sync` (polled every 50 ms), against `rsync -a --fsync` into an empty module of a
 *    loopback rsync daemon and against a plain local `rsync -a`. The page cache is dropped
 *    (sync; echo 3 > /proc/sys/vm/drop_caches) before each timed run, so all three start cold.
 *    Each copy is checked against the source (relative path, size, SHA-256).
 * 2. Bytes on the wire, both directions, for 100 random 4 KiB in-place edits of a 1 GiB file,
 *    against `rsync -a --no-whole-file --stats` through the daemon for the same edits ("Total
 *    bytes sent" + "Total bytes received"). Ours are the TCP payload bytes of the data-link
 *    connection as the kernel counts them (`ss -tin`: bytes_sent + bytes_received of the
 *    connection's listening-side socket), so they include TLS and framing.
 * 3. Latency from close() of a 4 KiB file written on the primary to the complete file on the
 *    backup (polled every 2 ms, comparing content), p50/p99 over 1,000 changes at 50 changes/s,
 *    half new files and half rewrites. Context, not measured: lsyncd's default.rsync waits
 *    `delay = 15` s and Syncthing's watcher `fsWatcherDelayS = 10` s by default. Measured as
 *    context: the same at 10 changes/s, where the gaps exceed @parcel/watcher's debounce (it
 *    waits for 50 ms of quiet but notifies at least every 500 ms while events keep coming).
 * 4. Bytes on the data link for a rename of the 1 GiB file, and that the backup has it at the
 *    new path (anchor: rsync --delete, and rsync --fuzzy --delete-after, through the daemon).
 * 5. The heartbeat while this runs: the backup's status polled every 100 ms in every phase —
 *    samples where the peer was not `up`, the largest RTT p99 (over the last 1000 beats) and
 *    last RTT seen, and peer.suspect/peer.down events of either node.
 * Plus the peak RSS (VmHWM) of both `serve` processes at the end.
 *
 * Needs Linux and root (drop_caches; rsync is installed with apt-get when missing).
 * Options: --small-files N (10000) --large-files N (20) --large-mib M (50) --big-gib G (1)
 *          --edits N (100) --changes N (1000) --rate N (changes/s, 50)
 *          --slow-changes N (100, 0: none) --slow-rate N (10): latency context below the debounce
 *          --poll-ms N (50): how often the initial sync polls the primary's status
 * Smoke run: --small-files 500 --large-files 2 --large-mib 5 --big-gib 0.1 --changes 100
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomFillSync, randomInt } from 'node:crypto';
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ObjectStatus } from '../src-main/contract/control.js';
import { freePortPair, pairNodes, sleep, TestNode } from '../test/support/harness.js';
import { median, percentile, printTable, writeResults } from './stats.js';
import { canConnect, checkNoise, kib, KiB, mib, MiB, peakRssMiB, engineVersion, fail, failures, freeBytes, log, machineNoise, nodeDiagnostics, note, notes, objectStatus, ownPids, ratio, run, which, type RunResult } from './support.js';

// ---------------------------------------------------------------------------------------------
// Options

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} needs a number (got '${process.argv[i + 1] ?? ''}')`);
  return value;
}

const settings = {
  smallFiles: Math.round(option('small-files', 10_000)),
  largeFiles: Math.round(option('large-files', 20)),
  largeMiB: option('large-mib', 50),
  bigGiB: option('big-gib', 1),
  edits: Math.round(option('edits', 100)),
  changes: Math.round(option('changes', 1000)),
  rate: option('rate', 50),
  slowChanges: Math.round(option('slow-changes', 100)),
  slowRate: option('slow-rate', 10),
  pollMs: option('poll-ms', 50),
};

/** The events worth showing when a run failed. */
const FolderEvents = /error|unsettled|refused|skipped/;
const GiB = 1024 * MiB;
/** The engine's delta block size (src-main/engine/objects/folder/replica.ts). */
const EngineBlock = 16 * KiB;
const FilesPerFolder = 100;
const EditBytes = 4 * KiB;
const ChangeBytes = 4 * KiB;

// ---------------------------------------------------------------------------------------------
// Small helpers




async function mustRun(command: string, args: string[]): Promise<RunResult> {
  const result = await run(command, args);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return result;
}

/** Polls check until it returns a value; fails after timeoutMs, or when stalled() says progress stopped. */
async function waitUntil<T>(
  what: string,
  check: () => Promise<T | undefined>,
  options: { timeoutMs: number; everyMs: number; stallMs?: number; progress?: () => string },
): Promise<T> {
  const started = Date.now();
  let lastProgress = options.progress?.() ?? '';
  let progressAt = Date.now();
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
      lastError = null;
    } catch (error) {
      lastError = error;
    }
    const now = Date.now();
    if (options.progress) {
      const current = options.progress();
      if (current !== lastProgress) {
        lastProgress = current;
        progressAt = now;
      }
    }
    const detail = `${options.progress ? `; last progress: ${lastProgress}` : ''}${lastError ? `; last error: ${String(lastError)}` : ''}`;
    if (now - started > options.timeoutMs) throw new Error(`timed out after ${Math.round(options.timeoutMs / 1000)} s waiting for ${what}${detail}`);
    if (options.stallMs && now - progressAt > options.stallMs) {
      throw new Error(`no progress for ${Math.round(options.stallMs / 1000)} s waiting for ${what}${detail}`);
    }
    await sleep(options.everyMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Environment: root, rsync, page cache, free space

function ensureRsync(): string {
  let rsync = which('rsync');
  if (rsync) return rsync;
  if (process.getuid?.() !== 0) throw new Error('rsync is not installed and this is not root: install rsync');
  console.log('rsync is not installed: installing it with apt-get install -y rsync');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update'], { encoding: 'utf8', env });
  const install = update.status === 0 ? spawnSync('apt-get', ['install', '-y', 'rsync'], { encoding: 'utf8', env }) : update;
  rsync = which('rsync');
  if (install.status !== 0 || !rsync) throw new Error(`could not install rsync: ${`${install.stdout}${install.stderr}`.trim().split('\n').slice(-3).join(' | ')}`);
  return rsync;
}

let cacheDropNote: string | null = null;

/** sync; echo 3 > /proc/sys/vm/drop_caches — so the next timed run starts with a cold page cache. */
function dropCaches(): boolean {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch (error) {
    if (!cacheDropNote) {
      cacheDropNote = `could not drop the page cache (${(error as NodeJS.ErrnoException).code ?? String(error)}): timed runs may start warm`;
      note(cacheDropNote);
    }
    return false;
  }
}



// ---------------------------------------------------------------------------------------------
// Data

/** Writes `bytes` of random data to path in 4 MiB chunks. */
function writeRandomFile(path: string, bytes: number, chunk: Buffer): void {
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

/** A tree of small files ~100 a folder, folders three levels deep, and large files in large/. */
function generateTree(root: string): { files: number; bytes: number } {
  mkdirSync(root, { recursive: true });
  const leaves = Math.max(1, Math.ceil(settings.smallFiles / FilesPerFolder));
  const fan = Math.max(1, Math.ceil(Math.cbrt(leaves)));
  let bytes = 0;
  for (let i = 0; i < settings.smallFiles; i++) {
    const leaf = Math.floor(i / FilesPerFolder);
    const dir = join(root, `d${Math.floor(leaf / (fan * fan))}`, `e${Math.floor(leaf / fan) % fan}`, `f${leaf % fan}`);
    if (i % FilesPerFolder === 0) mkdirSync(dir, { recursive: true });
    const size = randomInt(1 * KiB, 64 * KiB + 1);
    writeFileSync(join(dir, `file-${i}.bin`), randomBytes(size));
    bytes += size;
  }
  const chunk = Buffer.allocUnsafe(4 * MiB);
  if (settings.largeFiles > 0) mkdirSync(join(root, 'large'), { recursive: true });
  const largeBytes = Math.round(settings.largeMiB * MiB);
  for (let i = 0; i < settings.largeFiles; i++) {
    writeRandomFile(join(root, 'large', `large-${String(i).padStart(2, '0')}.bin`), largeBytes, chunk);
    bytes += largeBytes;
  }
  return { files: settings.smallFiles + settings.largeFiles, bytes };
}

interface ManifestEntry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  sha256: string;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.allocUnsafe(4 * MiB);
    for (let at = 0; ; ) {
      const { bytesRead } = await file.read(buffer, 0, buffer.length, at);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
  } finally {
    await file.close();
  }
  return hash.digest('hex');
}

/** Relative path -> type, size, SHA-256 of everything under root (root itself excluded). */
async function manifest(root: string): Promise<Map<string, ManifestEntry>> {
  const result = new Map<string, ManifestEntry>();
  const walk = async (rel: string): Promise<void> => {
    for (const entry of readdirSync(rel === '' ? root : join(root, rel), { withFileTypes: true })) {
      const path = rel === '' ? entry.name : `${rel}/${entry.name}`;
      if (entry.isDirectory()) {
        result.set(path, { type: 'dir', size: 0, sha256: '' });
        await walk(path);
      } else if (entry.isFile()) {
        const abs = join(root, path);
        result.set(path, { type: 'file', size: statSync(abs).size, sha256: await sha256File(abs) });
      } else {
        result.set(path, { type: entry.isSymbolicLink() ? 'symlink' : 'other', size: 0, sha256: '' });
      }
    }
  };
  await walk('');
  return result;
}

function manifestDiff(expected: Map<string, ManifestEntry>, actual: Map<string, ManifestEntry>): string[] {
  const diffs: string[] = [];
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (!got) diffs.push(`missing ${path}`);
    else if (got.type !== want.type) diffs.push(`${path}: ${got.type}, expected ${want.type}`);
    else if (got.size !== want.size) diffs.push(`${path}: ${got.size} bytes, expected ${want.size}`);
    else if (got.sha256 !== want.sha256) diffs.push(`${path}: content differs (same size ${got.size})`);
  }
  for (const path of actual.keys()) if (!expected.has(path)) diffs.push(`extra ${path}`);
  return diffs;
}

async function verifyCopy(what: string, expected: Map<string, ManifestEntry>, root: string): Promise<boolean> {
  const diffs = manifestDiff(expected, await manifest(root));
  if (diffs.length === 0) {
    log(`${what}: byte-identical (${expected.size} entries, path + size + sha256)`);
    return true;
  }
  fail(`${what} is NOT byte-identical to the source`, new Error(`${diffs.length} differences, e.g. ${diffs.slice(0, 8).join('; ')}`));
  return false;
}

// ---------------------------------------------------------------------------------------------
// rsync daemon

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
    for (const path of Object.values(this.modules)) mkdirSync(path, { recursive: true });
    this.port = await freePortPair();
    const config = join(this.dir, 'rsyncd.conf');
    const modules = Object.entries(this.modules).map(([name, path]) => `[${name}]\n  path = ${path}\n  read only = no\n`);
    writeFileSync(
      config,
      `pid file = ${join(this.dir, 'rsyncd.pid')}\nlog file = ${join(this.dir, 'rsyncd.log')}\nuse chroot = no\nread only = no\nuid = root\ngid = root\n\n${modules.join('\n')}`,
    );
    const child = spawn(this.rsync, ['--daemon', '--no-detach', `--config=${config}`, `--port=${this.port}`, '--address=127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    if (child.pid) ownPids.add(child.pid);
    child.stdout.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    await waitUntil(
      'the rsync daemon to listen',
      async () => {
        if (child.exitCode !== null) throw new Error(`rsync --daemon exited ${child.exitCode}: ${this.output}`);
        return (await canConnect(this.port)) ? true : undefined;
      },
      { timeoutMs: 10_000, everyMs: 50 },
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


/** "Total bytes sent" + "Total bytes received" from rsync --stats (digits grouped with commas, or K/M/G). */
function rsyncStatBytes(output: string): { sent: number; received: number } {
  const read = (label: string): number => {
    const match = new RegExp(`Total bytes ${label}:\\s*([\\d.,]+)([KMGT]?)`).exec(output);
    if (!match) throw new Error(`no 'Total bytes ${label}' in rsync --stats output: ${output.slice(-400)}`);
    const scale = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 }[match[2] ?? ''] ?? 1;
    return Math.round(Number(match[1]!.replace(/,/g, '')) * scale);
  };
  return { sent: read('sent'), received: read('received') };
}

// ---------------------------------------------------------------------------------------------
// The data link's byte counters (ss -tin)

interface LinkBytes {
  /** local -> remote of the listening-side socket, e.g. "127.0.0.1:20000 127.0.0.1:51200". */
  tuple: string;
  /** Bytes the primary sent to the backup, and back. */
  primaryToBackup: number;
  backupToPrimary: number;
}

/**
 * The data link is the one established connection whose listening side is a node's PORT (the
 * node with the lower id dials the other). Its listening-side socket's bytes_sent and
 * bytes_received count TCP payload in both directions (on loopback nothing is retransmitted).
 */
async function linkBytes(primary: TestNode, backup: TestNode): Promise<LinkBytes> {
  const result = await mustRun('ss', ['-tinHn', 'state', 'established']);
  const lines = result.stdout.split('\n');
  const found: LinkBytes[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (/^\s/.test(line) || line.trim() === '') continue;
    const addresses = line.trim().split(/\s+/).filter((token) => /:\d+$/.test(token));
    if (addresses.length < 2) continue;
    const [local, remote] = [addresses[0]!, addresses[1]!];
    const localPort = Number(local.slice(local.lastIndexOf(':') + 1));
    if (!local.startsWith('127.0.0.1:') || !remote.startsWith('127.0.0.1:')) continue;
    if (localPort !== primary.port && localPort !== backup.port) continue;
    const info = lines[i + 1] && /^\s/.test(lines[i + 1]!) ? lines[i + 1]! : '';
    const counter = (name: string) => Number(new RegExp(`\\b${name}:(\\d+)`).exec(info)?.[1] ?? 0);
    const sent = counter('bytes_sent');
    const received = counter('bytes_received');
    const serverIsPrimary = localPort === primary.port;
    found.push({ tuple: `${local} ${remote}`, primaryToBackup: serverIsPrimary ? sent : received, backupToPrimary: serverIsPrimary ? received : sent });
  }
  if (found.length !== 1) throw new Error(`expected one data-link connection on port ${primary.port} or ${backup.port}, found ${found.length}: ${found.map((f) => f.tuple).join(', ')}`);
  return found[0]!;
}

interface WireBytes {
  primaryToBackup: number;
  backupToPrimary: number;
  total: number;
}

function wireDelta(before: LinkBytes, after: LinkBytes): WireBytes {
  if (before.tuple !== after.tuple) throw new Error(`the data link reconnected during the measurement (${before.tuple} -> ${after.tuple}); its bytes cannot be counted`);
  const primaryToBackup = after.primaryToBackup - before.primaryToBackup;
  const backupToPrimary = after.backupToPrimary - before.backupToPrimary;
  return { primaryToBackup, backupToPrimary, total: primaryToBackup + backupToPrimary };
}

// ---------------------------------------------------------------------------------------------
// Heartbeat monitor: the backup's status every 100 ms, per phase

interface PhaseBeats {
  samples: number;
  notUp: number;
  statesSeen: string[];
  linkDisconnected: number;
  maxRttP99Us: number | null;
  maxRttMs: number | null;
  statusErrors: number;
  maxStatusCallMs: number;
  suspectOrDownEvents: number;
  /** The peer.suspect / peer.down events of either node in this phase. */
  events: { node: string; at: string; type: string; message: string }[];
}

class HeartbeatMonitor {
  readonly phases = new Map<string, PhaseBeats>();
  private current: string | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private eventMarks = { primary: 0, backup: 0 };

  constructor(
    private readonly primary: TestNode,
    private readonly backup: TestNode,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        const phase = this.current;
        const at = performance.now();
        if (phase) {
          const beats = this.phases.get(phase)!;
          try {
            const status = await this.backup.status();
            const peer = status.peers[0];
            beats.samples += 1;
            const state = peer?.state ?? 'none';
            if (state !== 'up') beats.notUp += 1;
            if (!beats.statesSeen.includes(state)) beats.statesSeen.push(state);
            if (peer?.link !== 'connected') beats.linkDisconnected += 1;
            if (peer?.rtt) beats.maxRttP99Us = Math.max(beats.maxRttP99Us ?? 0, peer.rtt.p99Us);
            if (peer?.rttMs != null) beats.maxRttMs = Math.max(beats.maxRttMs ?? 0, peer.rttMs);
          } catch {
            beats.statusErrors += 1;
          }
          beats.maxStatusCallMs = Math.max(beats.maxStatusCallMs, Math.round(performance.now() - at));
        }
        await sleep(Math.max(0, 100 - (performance.now() - at)));
      }
    })();
  }

  /** Closes the current phase (counting the peer.suspect/down events it saw) and opens `name`. */
  phase(name: string | null): void {
    if (this.current) {
      const beats = this.phases.get(this.current)!;
      for (const [node, mark] of [[this.primary, this.eventMarks.primary], [this.backup, this.eventMarks.backup]] as const) {
        for (const e of node.events.slice(mark)) {
          if (e.type !== 'peer.suspect' && e.type !== 'peer.down') continue;
          beats.suspectOrDownEvents += 1;
          beats.events.push({ node: node.name, at: e.at, type: e.type, message: e.message });
        }
      }
    }
    this.eventMarks = { primary: this.primary.events.length, backup: this.backup.events.length };
    this.current = name;
    if (name && !this.phases.has(name)) {
      this.phases.set(name, { samples: 0, notUp: 0, statesSeen: [], linkDisconnected: 0, maxRttP99Us: null, maxRttMs: null, statusErrors: 0, maxStatusCallMs: 0, suspectOrDownEvents: 0, events: [] });
    }
  }

  async stop(): Promise<void> {
    this.phase(null);
    this.stopped = true;
    await this.loop;
  }
}

// ---------------------------------------------------------------------------------------------
// Talking to the nodes

async function protect(primary: TestNode, source: string, target: string): Promise<string> {
  const result = await primary.call('object:protect', { kind: 'folder', source, target, excludes: [] });
  return result.id;
}

function progressText(status: ObjectStatus | undefined): string {
  if (!status) return 'no status';
  const p = status.progress;
  return `${status.state}, pending ${status.pending}${p ? `, files ${p.filesDone}/${p.files}, bytes ${p.bytesDone}/${p.bytes}` : ''}${status.error ? `, error ${status.error}` : ''}`;
}

/** Waits for the object's `in-sync` on the primary (polled every everyMs); returns ms since `since`. */
async function waitInSync(primary: TestNode, id: string, since: number, timeoutMs: number, everyMs = 50, statusCallMs?: number[]): Promise<number> {
  let last: ObjectStatus | undefined;
  return waitUntil(
    `object ${id} in-sync`,
    async () => {
      const at = performance.now();
      last = await objectStatus(primary, id);
      statusCallMs?.push(performance.now() - at);
      if (last?.state === 'error') throw new Error(`object in error: ${last.error ?? ''}`);
      return last?.state === 'in-sync' && last.pending === 0 ? performance.now() - since : undefined;
    },
    { timeoutMs, everyMs, stallMs: 90_000, progress: () => progressText(last) },
  );
}

interface CpuTimes {
  /** All threads of the process (main, hash worker, heartbeat worker, libuv pool). */
  total: number;
  mainThread: number;
}

/** CPU seconds (user + system) from /proc, at the usual 100 clock ticks a second. */
function cpuTimes(pid: number): CpuTimes | null {
  const seconds = (path: string) => {
    const stat = readFileSync(path, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  };
  try {
    return { total: seconds(`/proc/${pid}/stat`), mainThread: seconds(`/proc/${pid}/task/${pid}/stat`) };
  } catch {
    return null;
  }
}

function cpuDelta(before: CpuTimes | null, after: CpuTimes | null): CpuTimes | null {
  if (!before || !after) return null;
  return { total: Math.round((after.total - before.total) * 100) / 100, mainThread: Math.round((after.mainThread - before.mainThread) * 100) / 100 };
}


// ---------------------------------------------------------------------------------------------
// The measurements

interface InitialResult {
  files: number;
  bytes: number;
  oursMs: number | null;
  oursEventMs: number | null;
  oursIdentical: boolean | null;
  rsyncDaemonMs: number | null;
  rsyncDaemonIdentical: boolean | null;
  rsyncLocalMs: number | null;
  rsyncLocalIdentical: boolean | null;
  cacheDropped: boolean;
  statusCallMs: { p50: number; max: number; calls: number } | null;
  /** CPU seconds the serve processes used from protect to in-sync. */
  cpu: { primary: CpuTimes | null; backup: CpuTimes | null } | null;
}

interface DeltaResult {
  fileBytes: number;
  edits: number;
  engineBlocksTouched: number;
  /** What the engine's design needs at least: the touched 16 KiB blocks and the backup's block hashes. */
  engineFloorBytes: number;
  /** How long the burst of edits took (a scan may land inside it and journal the file twice). */
  editMs: number;
  /** backup->primary bytes over the size of one block-hash list: how many times the backup asked for the file. */
  hashLists: number | null;
  ours: WireBytes | null;
  oursMs: number | null;
  oursIdentical: boolean | null;
  rsync: { sent: number; received: number; total: number } | null;
  rsyncIdentical: boolean | null;
}

interface RenameResult {
  ours: WireBytes | null;
  oursMs: number | null;
  backupHasNewPath: boolean | null;
  rsyncDelete: { sent: number; received: number; total: number } | null;
  rsyncFuzzy: { sent: number; received: number; total: number } | null;
}

interface LatencyResult {
  changes: number;
  rate: number;
  latenciesMs: number[];
  lost: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

/**
 * Writes `changes` 4 KiB files into src at `rate` a second (name(i) says which; a name already
 * there is rewritten in place) and polls dst every 2 ms until each has the new content. The
 * latency is from the return of writeFileSync (its close) to the poll that saw the full content.
 */
async function measureLatency(src: string, dst: string, changes: number, rate: number, name: (i: number) => string): Promise<LatencyResult> {
  const result: LatencyResult = { changes, rate, latenciesMs: [], lost: 0, p50: null, p99: null, max: null };
  const interval = 1000 / rate;
  const pending = new Map<string, { expected: Buffer; closedAt: number }>();
  const perChangeTimeoutMs = 30_000;
  const start = performance.now();
  let next = 0;
  let lastWrite = start;
  while (next < changes || pending.size > 0) {
    let now = performance.now();
    while (next < changes && now >= start + next * interval) {
      const file = name(next);
      const content = randomBytes(ChangeBytes);
      writeFileSync(join(src, file), content);
      now = performance.now();
      pending.set(file, { expected: content, closedAt: now });
      lastWrite = now;
      next += 1;
    }
    for (const [file, change] of pending) {
      let copy: Buffer | null;
      try {
        copy = readFileSync(join(dst, file));
      } catch {
        copy = null;
      }
      now = performance.now();
      if (copy?.equals(change.expected)) {
        result.latenciesMs.push(now - change.closedAt);
        pending.delete(file);
      } else if (now - change.closedAt > perChangeTimeoutMs) {
        result.lost += 1;
        pending.delete(file);
      }
    }
    if (next >= changes && now - lastWrite > perChangeTimeoutMs + 1000) break;
    await sleep(2);
  }
  const values = result.latenciesMs;
  if (values.length > 0) {
    result.p50 = Math.round(percentile(values, 0.5) * 10) / 10;
    result.p99 = Math.round(percentile(values, 0.99) * 10) / 10;
    result.max = Math.round(Math.max(...values) * 10) / 10;
  }
  return result;
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  // Read now, right after the build: the tree may get new commits while the bench runs.
  const engine = engineVersion();
  if (process.platform !== 'linux') throw new Error('bench:folder needs Linux (ss, /proc, drop_caches)');
  if (process.getuid?.() !== 0) note('not root: the page cache cannot be dropped and the rsync daemon cannot keep owners');
  const rsync = ensureRsync();
  const rsyncVersion = (await run(rsync, ['--version'])).stdout.split('\n')[0] ?? '';

  const work = mkdtempSync(join(tmpdir(), 'understudy-bench-folder-'));
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
    // Space: the tree and the big file, each with up to three copies at once (ours, rsync's,
    // and rsync --delete's new file next to the old one), plus a margin.
    const treeBytes = settings.smallFiles * 32.5 * KiB + settings.largeFiles * settings.largeMiB * MiB;
    const bigBytesWanted = settings.bigGiB * GiB;
    const needed = (treeBytes + bigBytesWanted) * 4 * 1.1 + 256 * MiB;
    const free = freeBytes(work);
    log(`free space in ${work}: ${(free / GiB).toFixed(1)} GiB; this run needs about ${(needed / GiB).toFixed(1)} GiB`);
    if (free < needed) {
      const scale = (free * 0.9) / needed;
      settings.smallFiles = Math.floor(settings.smallFiles * scale);
      settings.largeFiles = Math.floor(settings.largeFiles * scale);
      settings.bigGiB = Math.floor(settings.bigGiB * scale * 100) / 100;
      note(`only ${(free / GiB).toFixed(1)} GiB free: sizes scaled down by ${scale.toFixed(2)} to ${settings.smallFiles} small files, ${settings.largeFiles} large files, ${settings.bigGiB} GiB big file`);
    }
    const bigBytes = Math.max(EngineBlock, Math.round((settings.bigGiB * GiB) / (4 * KiB)) * 4 * KiB);

    // ----- data
    const src = { tree: join(work, 'src', 'tree'), big: join(work, 'src', 'big'), lat: join(work, 'src', 'lat') };
    const dst = { tree: join(work, 'backup', 'tree'), big: join(work, 'backup', 'big'), lat: join(work, 'backup', 'lat') };
    const rsyncDir = { tree: join(work, 'rsyncd', 'tree'), big: join(work, 'rsyncd', 'big'), local: join(work, 'rsync-local', 'tree') };
    log(`generating ${settings.smallFiles} files of 1-64 KiB and ${settings.largeFiles} of ${settings.largeMiB} MiB, a ${mib(bigBytes)} file, ${Math.ceil(settings.changes / 2)} files of 4 KiB`);
    let generated = performance.now();
    const tree = generateTree(src.tree);
    mkdirSync(src.big, { recursive: true });
    const bigFile = join(src.big, 'big.bin');
    writeRandomFile(bigFile, bigBytes, Buffer.allocUnsafe(4 * MiB));
    mkdirSync(src.lat, { recursive: true });
    const seeds = Math.ceil(settings.changes / 2);
    for (let i = 0; i < seeds; i++) writeFileSync(join(src.lat, `seed-${i}.bin`), randomBytes(ChangeBytes));
    const treeManifest = await manifest(src.tree);
    log(`generated ${tree.files} files, ${mib(tree.bytes)} in the tree, in ${((performance.now() - generated) / 1000).toFixed(1)} s`);
    generated = performance.now();

    const initial: InitialResult = {
      files: tree.files,
      bytes: tree.bytes,
      oursMs: null,
      oursEventMs: null,
      oursIdentical: null,
      rsyncDaemonMs: null,
      rsyncDaemonIdentical: null,
      rsyncLocalMs: null,
      rsyncLocalIdentical: null,
      cacheDropped: false,
      statusCallMs: null,
      cpu: null,
    };

    // ----- 1a. rsync anchors first, while no node runs: daemon with --fsync, then plain local.
    const daemon = new RsyncDaemon(rsync, join(work, 'rsyncd-conf'), { tree: rsyncDir.tree, big: rsyncDir.big });
    await daemon.start();
    cleanups.push(() => daemon.stop());
    log(`rsync daemon (${rsyncVersion}) on 127.0.0.1:${daemon.port}`);
    try {
      checkNoise('initial sync: rsync daemon');
      initial.cacheDropped = dropCaches();
      log('rsync -a --fsync through the daemon (page cache dropped)...');
      const result = await mustRun(rsync, ['-a', '--fsync', `${src.tree}/`, daemon.url('tree')]);
      initial.rsyncDaemonMs = Math.round(result.ms);
      log(`rsync daemon: ${(result.ms / 1000).toFixed(2)} s`);
      initial.rsyncDaemonIdentical = await verifyCopy('rsync daemon copy', treeManifest, rsyncDir.tree);
      rmSync(rsyncDir.tree, { recursive: true, force: true });
      mkdirSync(rsyncDir.tree, { recursive: true });
    } catch (error) {
      fail('initial sync: rsync through the daemon', error);
    }
    try {
      checkNoise('initial sync: local rsync');
      dropCaches();
      mkdirSync(join(rsyncDir.local, '..'), { recursive: true });
      log('rsync -a local (page cache dropped)...');
      const result = await mustRun(rsync, ['-a', `${src.tree}/`, `${rsyncDir.local}/`]);
      initial.rsyncLocalMs = Math.round(result.ms);
      log(`rsync local: ${(result.ms / 1000).toFixed(2)} s`);
      initial.rsyncLocalIdentical = await verifyCopy('local rsync copy', treeManifest, rsyncDir.local);
      rmSync(rsyncDir.local, { recursive: true, force: true });
    } catch (error) {
      fail('initial sync: local rsync', error);
    }

    // ----- the nodes
    const [primary, backup] = await Promise.all([TestNode.create('folder-a'), TestNode.create('folder-b')]);
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
    const monitor = new HeartbeatMonitor(primary, backup);
    monitor.start();
    cleanups.push(() => monitor.stop());

    // ----- 1b. ours: protect -> in-sync, cold cache.
    try {
      checkNoise('initial sync: Understudy');
      dropCaches();
      monitor.phase('initial sync');
      log(`protect ${src.tree} (page cache dropped); polling the primary's status every ${settings.pollMs} ms...`);
      const calls: number[] = [];
      const mark = primary.events.length;
      const cpuBefore = { primary: cpuTimes(primary.pid), backup: cpuTimes(backup.pid) };
      const t0 = performance.now();
      const id = await protect(primary, src.tree, dst.tree);
      const timeoutMs = 120_000 + (tree.bytes / (2 * MiB)) * 1000;
      initial.oursMs = Math.round(await waitInSync(primary, id, t0, timeoutMs, settings.pollMs, calls));
      initial.cpu = { primary: cpuDelta(cpuBefore.primary, cpuTimes(primary.pid)), backup: cpuDelta(cpuBefore.backup, cpuTimes(backup.pid)) };
      monitor.phase(null);
      const event = primary.events.slice(mark).find((e) => e.type === 'folder.in-sync');
      initial.oursEventMs = typeof (event as { ms?: unknown } | undefined)?.ms === 'number' ? (event as unknown as { ms: number }).ms : null;
      initial.statusCallMs = { p50: Math.round(median(calls) * 10) / 10, max: Math.round(Math.max(...calls)), calls: calls.length };
      log(`ours: in-sync after ${(initial.oursMs / 1000).toFixed(2)} s (its folder.in-sync event says ${initial.oursEventMs ?? '?'} ms)`);
      initial.oursIdentical = await verifyCopy("Understudy's backup copy", treeManifest, dst.tree);
    } catch (error) {
      monitor.phase(null);
      fail('initial sync: Understudy', error);
    }

    // ----- 2. 100 random 4 KiB edits in the big file: bytes on the wire.
    const delta: DeltaResult = {
      fileBytes: bigBytes,
      edits: settings.edits,
      engineBlocksTouched: 0,
      engineFloorBytes: 0,
      editMs: 0,
      hashLists: null,
      ours: null,
      oursMs: null,
      oursIdentical: null,
      rsync: null,
      rsyncIdentical: null,
    };
    const rename: RenameResult = { ours: null, oursMs: null, backupHasNewPath: null, rsyncDelete: null, rsyncFuzzy: null };
    let bigReady = false;
    let editedHash: string | null = null;
    try {
      monitor.phase('big file: first copy');
      log(`protect ${src.big} (${mib(bigBytes)}) and wait for in-sync...`);
      const t0 = performance.now();
      const id = await protect(primary, src.big, dst.big);
      const firstMs = await waitInSync(primary, id, t0, 120_000 + (bigBytes / (5 * MiB)) * 1000, 100);
      monitor.phase(null);
      const [a, b] = await Promise.all([sha256File(bigFile), sha256File(join(dst.big, 'big.bin'))]);
      if (a !== b) throw new Error(`after the first copy the backup's big.bin differs from the primary's (sha256 ${b.slice(0, 12)} vs ${a.slice(0, 12)})`);
      log(`big file in sync after ${(firstMs / 1000).toFixed(1)} s; copying it to the rsync daemon too`);
      await mustRun(rsync, ['-a', `${src.big}/`, daemon.url('big')]);
      bigReady = true;

      monitor.phase('delta: 4 KiB edits');
      const before = await linkBytes(primary, backup);
      const touched = new Set<number>();
      const fd = openSync(bigFile, 'r+');
      const t1 = performance.now();
      try {
        for (let i = 0; i < settings.edits; i++) {
          const offset = randomInt(0, bigBytes - EditBytes + 1);
          writeSync(fd, randomBytes(EditBytes), 0, EditBytes, offset);
          touched.add(Math.floor(offset / EngineBlock));
          touched.add(Math.floor((offset + EditBytes - 1) / EngineBlock));
        }
      } finally {
        closeSync(fd);
      }
      delta.editMs = Math.round((performance.now() - t1) * 10) / 10;
      delta.engineBlocksTouched = touched.size;
      delta.engineFloorBytes = touched.size * EngineBlock + Math.ceil(bigBytes / EngineBlock) * 16;
      const edited = statSync(bigFile);
      log(`${settings.edits} edits of 4 KiB applied in place (${touched.size} blocks of 16 KiB touched); waiting for the backup...`);
      const backupBig = join(dst.big, 'big.bin');
      let lastSeen = '';
      const after = await waitUntil(
        "the backup's big.bin to match the edited file",
        async () => {
          const copy = lstatSync(backupBig, { throwIfNoEntry: false });
          const status = await objectStatus(primary, id);
          lastSeen = `${progressText(status)}; backup copy ${copy ? `size ${copy.size}, mtime ${copy.mtimeMs === edited.mtimeMs ? 'new' : 'old'}` : 'missing'}`;
          if (!copy || copy.size !== edited.size || Math.abs(copy.mtimeMs - edited.mtimeMs) >= 1) return undefined;
          if (status?.state !== 'in-sync' || status.pending !== 0) return undefined;
          const snapshot = await linkBytes(primary, backup);
          const elapsed = performance.now() - t1;
          editedHash ??= await sha256File(bigFile);
          if ((await sha256File(backupBig)) !== editedHash) throw new Error("the backup's big.bin has the new size and mtime but different content");
          delta.oursMs = Math.round(elapsed);
          return snapshot;
        },
        { timeoutMs: 120_000 + (bigBytes / (10 * MiB)) * 1000, everyMs: 25, progress: () => lastSeen },
      );
      monitor.phase(null);
      delta.ours = wireDelta(before, after);
      delta.oursIdentical = true;
      delta.hashLists = Math.round((delta.ours.backupToPrimary / (Math.ceil(bigBytes / EngineBlock) * 16)) * 100) / 100;
      log(`ours: ${mib(delta.ours.total)} on the wire (primary->backup ${mib(delta.ours.primaryToBackup)}, back ${mib(delta.ours.backupToPrimary)}), ${delta.oursMs} ms`);
    } catch (error) {
      monitor.phase(null);
      fail('delta edits: Understudy', error);
    }
    if (bigReady) {
      try {
        const result = await mustRun(rsync, ['-a', '--no-whole-file', '--stats', `${src.big}/`, daemon.url('big')]);
        const bytes = rsyncStatBytes(result.stdout);
        delta.rsync = { ...bytes, total: bytes.sent + bytes.received };
        editedHash ??= await sha256File(bigFile);
        delta.rsyncIdentical = (await sha256File(join(rsyncDir.big, 'big.bin'))) === editedHash;
        if (!delta.rsyncIdentical) fail('delta edits: rsync', new Error("rsync's copy differs from the source"));
        log(`rsync --no-whole-file: ${mib(delta.rsync.total)} (sent ${mib(bytes.sent)}, received ${mib(bytes.received)})`);
      } catch (error) {
        fail('delta edits: rsync', error);
      }
    }

    // ----- 4. Rename of the big file.
    if (bigReady) {
      const renamed = join(src.big, 'big-renamed.bin');
      try {
        monitor.phase('rename');
        const status = (await primary.status()).objects.find((o) => o.source === src.big);
        if (!status) throw new Error('the big file folder is not protected');
        await waitInSync(primary, status.id, performance.now(), 120_000, 50);
        const before = await linkBytes(primary, backup);
        const t0 = performance.now();
        renameSync(bigFile, renamed);
        log('big.bin renamed to big-renamed.bin; waiting for the backup...');
        let lastSeen = '';
        const after = await waitUntil(
          'the backup to have big-renamed.bin and no big.bin',
          async () => {
            const moved = lstatSync(join(dst.big, 'big-renamed.bin'), { throwIfNoEntry: false });
            const old = existsSync(join(dst.big, 'big.bin'));
            const s = await objectStatus(primary, status.id);
            lastSeen = `${progressText(s)}; new path ${moved ? `size ${moved.size}` : 'missing'}, old path ${old ? 'present' : 'gone'}`;
            if (!moved || moved.size !== bigBytes || old || s?.state !== 'in-sync' || s.pending !== 0) return undefined;
            const snapshot = await linkBytes(primary, backup);
            rename.oursMs = Math.round(performance.now() - t0);
            return snapshot;
          },
          { timeoutMs: 60_000 + (bigBytes / (10 * MiB)) * 1000, everyMs: 10, progress: () => lastSeen },
        );
        monitor.phase(null);
        rename.ours = wireDelta(before, after);
        editedHash ??= await sha256File(renamed);
        rename.backupHasNewPath = (await sha256File(join(dst.big, 'big-renamed.bin'))) === editedHash;
        if (!rename.backupHasNewPath) fail('rename: Understudy', new Error("the backup's big-renamed.bin differs from the primary's file"));
        log(`ours: rename cost ${kib(rename.ours.total)} on the wire, ${rename.oursMs} ms`);
      } catch (error) {
        monitor.phase(null);
        fail('rename: Understudy', error);
      }
      try {
        const plain = rsyncStatBytes((await mustRun(rsync, ['-a', '--delete', '--no-whole-file', '--stats', `${src.big}/`, daemon.url('big')])).stdout);
        rename.rsyncDelete = { ...plain, total: plain.sent + plain.received };
        // Back to the state before the rename, then the same with --fuzzy (a basis file from the old name).
        renameSync(join(rsyncDir.big, 'big-renamed.bin'), join(rsyncDir.big, 'big.bin'));
        const fuzzy = rsyncStatBytes((await mustRun(rsync, ['-a', '--delete-after', '--fuzzy', '--no-whole-file', '--stats', `${src.big}/`, daemon.url('big')])).stdout);
        rename.rsyncFuzzy = { ...fuzzy, total: fuzzy.sent + fuzzy.received };
        log(`rsync rename: --delete ${mib(rename.rsyncDelete.total)}, --fuzzy --delete-after ${kib(rename.rsyncFuzzy.total)}`);
      } catch (error) {
        fail('rename: rsync', error);
      }
      rmSync(rsyncDir.big, { recursive: true, force: true });
    }

    // ----- 3. Latency of small changes; then the same below the watcher's 50 ms debounce, as context.
    const emptyLatency = (changes: number, rate: number): LatencyResult => ({ changes, rate, latenciesMs: [], lost: 0, p50: null, p99: null, max: null });
    let latency = emptyLatency(settings.changes, settings.rate);
    const slowChanges = Math.min(settings.slowChanges, settings.changes);
    let slow = emptyLatency(slowChanges, settings.slowRate);
    try {
      monitor.phase('latency: setup');
      const id = await protect(primary, src.lat, dst.lat);
      await waitInSync(primary, id, performance.now(), 120_000, 100);
      monitor.phase('latency: 4 KiB changes');
      checkNoise('latency');
      log(`${settings.changes} changes of 4 KiB at ${settings.rate}/s (half new files, half rewrites), backup polled every 2 ms...`);
      latency = await measureLatency(src.lat, dst.lat, settings.changes, settings.rate, (i) => (i % 2 === 0 ? `new-${i}.bin` : `seed-${(i - 1) / 2}.bin`));
      monitor.phase(null);
      log(`latency: p50 ${latency.p50} ms, p99 ${latency.p99} ms, max ${latency.max} ms, ${latency.lost} not on the backup within 30 s`);
      if (latency.lost > 0) fail('latency', new Error(`${latency.lost} of ${settings.changes} changes did not reach the backup within 30 s`));
      if (slowChanges > 0) {
        monitor.phase('latency: slow rate');
        log(`context: ${slowChanges} changes at ${settings.slowRate}/s (gaps above the watcher's 50 ms debounce)...`);
        slow = await measureLatency(src.lat, dst.lat, slowChanges, settings.slowRate, (i) => (i % 2 === 0 ? `slow-${i}.bin` : `new-${i - 1}.bin`));
        monitor.phase(null);
        log(`latency at ${settings.slowRate}/s: p50 ${slow.p50} ms, p99 ${slow.p99} ms, max ${slow.max} ms, ${slow.lost} lost`);
        if (slow.lost > 0) fail('latency (slow rate)', new Error(`${slow.lost} of ${slowChanges} changes did not reach the backup within 30 s`));
      }
    } catch (error) {
      monitor.phase(null);
      fail('latency: Understudy', error);
    }

    // ----- peak RSS, heartbeat, diagnostics
    const rss = { primaryMiB: peakRssMiB(primary.pid), backupMiB: peakRssMiB(backup.pid) };
    await monitor.stop();
    const diagnostics = failures.length > 0 ? `${nodeDiagnostics(primary, FolderEvents)}\n\n${nodeDiagnostics(backup, FolderEvents)}` : null;

    // ----- report
    const totalMs = Date.now() - startedAt;
    const fmtS = (ms: number | null) => (ms === null ? 'FAILED' : `${(ms / 1000).toFixed(2)} s`);
    const verdict = (value: number | null, goal: number, identical: boolean | null = true) =>
      value === null || identical === false ? 'FAILED' : value <= goal ? 'met' : 'missed';
    const daemonRatio = ratio(initial.oursMs, initial.rsyncDaemonMs);
    const localRatio = ratio(initial.oursMs, initial.rsyncLocalMs);
    const deltaRatio = ratio(delta.ours?.total ?? null, delta.rsync?.total ?? null);
    const rows: Record<string, string | number>[] = [
      {
        measure: `initial sync: ${initial.files} files, ${mib(initial.bytes)} (cold cache)`,
        ours: `${fmtS(initial.oursMs)}${initial.oursIdentical === false ? ' MISMATCH' : ''}`,
        anchor: `rsync -a --fsync via daemon ${fmtS(initial.rsyncDaemonMs)}`,
        ratio: daemonRatio ?? '',
        goal: '<= 1.0',
        result: verdict(daemonRatio, 1.0, initial.oursIdentical),
      },
      {
        measure: '  same, against a local rsync -a',
        ours: fmtS(initial.oursMs),
        anchor: `rsync -a local ${fmtS(initial.rsyncLocalMs)}`,
        ratio: localRatio ?? '',
        goal: '(context)',
        result: '',
      },
      {
        measure: `delta: ${delta.edits} x 4 KiB edits in ${mib(delta.fileBytes)}, bytes both ways`,
        ours: delta.ours ? mib(delta.ours.total) : 'FAILED',
        anchor: `rsync --no-whole-file ${delta.rsync ? mib(delta.rsync.total) : 'n/a'}`,
        ratio: deltaRatio ?? '',
        goal: '<= 1.1',
        result: verdict(deltaRatio, 1.1, delta.oursIdentical),
      },
      {
        measure: `change latency p50 (${latency.changes} x 4 KiB at ${latency.rate}/s)`,
        ours: latency.p50 === null ? 'FAILED' : `${latency.p50} ms`,
        anchor: 'lsyncd default delay 15 s; Syncthing 10 s (defaults, not measured)',
        ratio: '',
        goal: '',
        result: '',
      },
      {
        measure: 'change latency p99',
        ours: latency.p99 === null ? 'FAILED' : `${latency.p99} ms (max ${latency.max}, lost ${latency.lost})`,
        anchor: '',
        ratio: '',
        goal: '<= 250 ms',
        result: latency.lost > 0 ? 'FAILED' : verdict(latency.p99, 250),
      },
      {
        measure: `  context: p50 / p99 at ${slow.rate}/s (${slow.changes} changes)`,
        ours: slow.p50 === null ? (slow.changes === 0 ? 'not run' : 'FAILED') : `${slow.p50} / ${slow.p99} ms (lost ${slow.lost})`,
        anchor: "gaps > @parcel/watcher's 50 ms debounce",
        ratio: '',
        goal: '(context)',
        result: '',
      },
      {
        measure: `rename of the ${mib(delta.fileBytes)} file, bytes on the data link`,
        ours: rename.ours ? `${kib(rename.ours.total)}${rename.backupHasNewPath === false ? ' MISMATCH' : ''}` : 'FAILED',
        anchor: `rsync --delete ${rename.rsyncDelete ? mib(rename.rsyncDelete.total) : 'n/a'}; --fuzzy ${rename.rsyncFuzzy ? kib(rename.rsyncFuzzy.total) : 'n/a'}`,
        ratio: '',
        goal: '< 10 KiB',
        result: rename.ours === null || rename.backupHasNewPath !== true ? 'FAILED' : rename.ours.total < 10 * KiB ? 'met' : 'missed',
      },
    ];
    console.log('');
    printTable(rows);
    console.log('');
    printTable(
      [...monitor.phases].map(([phase, beats]) => ({
        'heartbeat (backup status / 100 ms)': phase,
        samples: beats.samples,
        'not up': beats.notUp,
        'link down': beats.linkDisconnected,
        'suspect/down events': beats.suspectOrDownEvents,
        'max rtt p99 (us)': beats.maxRttP99Us ?? '',
        'max last rtt (ms)': beats.maxRttMs ?? '',
        'slowest status call (ms)': beats.maxStatusCallMs,
      })),
    );
    console.log('');
    console.log(`peak RSS (VmHWM): primary ${rss.primaryMiB ?? '?'} MiB, backup ${rss.backupMiB ?? '?'} MiB`);
    if (delta.ours) {
      console.log(
        `delta detail: primary->backup ${delta.ours.primaryToBackup} B, backup->primary ${delta.ours.backupToPrimary} B; ` +
          `${delta.engineBlocksTouched} blocks of 16 KiB touched: the design's floor is ${mib(delta.engineFloorBytes)} (those blocks + the backup's block hashes); ` +
          `backup->primary = ${delta.hashLists} x the block-hash list; the edits took ${delta.editMs} ms; ` +
          `rsync sent ${delta.rsync?.sent ?? '?'} B, received ${delta.rsync?.received ?? '?'} B; ours took ${delta.oursMs} ms`,
    );
    }
    if (rename.ours) console.log(`rename detail: primary->backup ${rename.ours.primaryToBackup} B, backup->primary ${rename.ours.backupToPrimary} B, ${rename.oursMs} ms to the new path`);
    if (initial.cpu && initial.oursMs !== null) {
      const cpu = (c: CpuTimes | null) => (c ? `${c.total} s (main thread ${c.mainThread} s)` : '?');
      console.log(`CPU during our initial sync (${(initial.oursMs / 1000).toFixed(1)} s, 2 cores): primary ${cpu(initial.cpu.primary)}, backup ${cpu(initial.cpu.backup)}`);
    }
    const falseAlarms = [...monitor.phases].filter(([, beats]) => beats.suspectOrDownEvents > 0 || beats.notUp > 0);
    for (const [phase, beats] of falseAlarms) {
      console.log(`!!! heartbeat during '${phase}': the peer was not up in ${beats.notUp} of ${beats.samples} samples; events: ${beats.events.map((e) => `${e.node} ${e.at.slice(11, 23)} ${e.type} (${e.message})`).join('; ') || 'none'}`);
    }
    if (initial.statusCallMs) {
      console.log(`primary status calls while polling the initial sync every ${settings.pollMs} ms: ${initial.statusCallMs.calls}, p50 ${initial.statusCallMs.p50} ms, max ${initial.statusCallMs.max} ms`);
    }
    console.log(
      initial.cacheDropped
        ? 'page cache dropped (sync; echo 3 > /proc/sys/vm/drop_caches) before each timed initial-sync run: rsync daemon, local rsync, ours'
        : 'page cache NOT dropped: timed runs may have started warm',
    );
    console.log('bytes: ours = TCP payload of the data-link connection (ss -tin; includes TLS and framing); rsync = its --stats "Total bytes sent" + "received"');
    console.log(`heartbeat: rtt p99 is the node's own figure over its last 1000 beats (200 s), so it spans more than the phase; total run time ${(totalMs / 1000).toFixed(0)} s`);
    console.log(`engine: ${engine}; rsync: ${rsyncVersion}`);
    for (const text of notes) console.log(`note: ${text}`);

    const path = writeResults('folder', {
      date: new Date().toISOString(),
      settings: { ...settings, bigBytes, engineBlockBytes: EngineBlock, rsync: rsyncVersion, cacheDropped: initial.cacheDropped, engine },
      initialSync: { ...initial, ratioToRsyncDaemon: daemonRatio, ratioToRsyncLocal: localRatio, goal: 'ours / rsync daemon --fsync <= 1.0' },
      delta: { ...delta, ratioToRsync: deltaRatio, goal: 'ours / rsync <= 1.1' },
      latency: {
        changes: latency.changes,
        rate: latency.rate,
        completed: latency.latenciesMs.length,
        lost: latency.lost,
        p50Ms: latency.p50,
        p99Ms: latency.p99,
        maxMs: latency.max,
        goal: 'p99 <= 250 ms',
        context: { lsyncdDefaultDelayS: 15, syncthingFsWatcherDelayS: 10, measured: false },
        slowRate: { changes: slow.changes, rate: slow.rate, completed: slow.latenciesMs.length, lost: slow.lost, p50Ms: slow.p50, p99Ms: slow.p99, maxMs: slow.max },
      },
      rename: { ...rename, goal: 'ours < 10 KiB' },
      heartbeat: Object.fromEntries(monitor.phases),
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
    // Something the run cannot go on without: say what the nodes said before they are removed.
    for (const node of nodes) console.error(`\n${nodeDiagnostics(node, FolderEvents)}`);
    throw error;
  } finally {
    await cleanup();
  }
}

main().catch((error: unknown) => {
  console.error(`bench:folder: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  if (failures.length > 0) console.error(`earlier failures:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
  process.exitCode = 1;
});
