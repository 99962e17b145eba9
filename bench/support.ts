/**
 * What every benchmark needs besides its measurements: logging, notes and failures kept for
 * the results file, a record of other processes competing for the machine, running a command
 * with a time limit, the engine's version, and diagnostics from a node when something failed.
 * Each bench is its own process, so the module's lists are that run's.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statfsSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ObjectStatus } from '../src-main/contract/control.js';
import type { TestNode } from '../test/support/harness.js';

export const notes: string[] = [];
export const failures: string[] = [];
export const machineNoise: { run: string; loadavg1: number; competitors: string[] }[] = [];

export function log(text: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${text}`);
}

export function note(text: string): void {
  notes.push(text);
  console.log(`note: ${text}`);
}

/** Records a failed part of the run; the bench goes on with the rest and reports it at the end. */
export function fail(what: string, error: unknown): void {
  const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
  failures.push(message);
  console.error(`\n!!! FAILED — ${message}\n`);
}

export function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : Math.round((a / b) * 1000) / 1000;
}

export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  return dirs.filter(Boolean).map((dir) => join(dir, name)).find((path) => existsSync(path));
}

export function freeBytes(dir: string): number {
  const stats = statfsSync(dir);
  return stats.bavail * stats.bsize;
}

export function tail(text: string, lines: number): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

export async function objectStatus(node: TestNode, id: string): Promise<ObjectStatus | undefined> {
  return (await node.status()).objects.find((o) => o.id === id);
}

/** PIDs this bench started (nodes, helpers, commands) and the ones that started it (npm, sh); everything else is a stranger. */
export const ownPids = new Set<number>([process.pid, ...ancestors()]);

function ancestors(): number[] {
  const found: number[] = [];
  for (let pid = process.ppid; pid > 1 && found.length < 8; ) {
    found.push(pid);
    try {
      pid = Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      break;
    }
  }
  return found;
}

/** Other processes that compete for the 2 cores and the disk: understudy nodes, test runs, other benches, builds. */
function competitors(): string[] {
  const found: string[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || ownPids.has(pid)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      // Children of ours (the rsync daemon forks one per connection) are ours too.
      const parent = Number(/^PPid:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
      if (ownPids.has(parent)) continue;
    } catch {
      continue;
    }
    if (/cli\/main\.js serve|node --test|\.test\.js|dist\/bench\/|(^|\/)rsync |(^|\/)tsc |eslint/.test(cmdline)) found.push(`${pid} ${cmdline.slice(0, 100)}`);
  }
  return found;
}

/** Records the load and the competing processes before a timed run; says so when there are any. */
export function checkNoise(run: string): void {
  const loadavg1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  const others = competitors();
  machineNoise.push({ run, loadavg1, competitors: others });
  if (others.length > 0) note(`${others.length} other process(es) competing during '${run}' (load ${loadavg1}): ${others.map((o) => o.split(' ').slice(0, 4).join(' ')).join('; ')}`);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
}

/** Runs a command to completion, timing it from spawn to exit; SIGKILL after timeoutMs. */
export function run(command: string, args: string[], timeoutMs = 30 * 60_000): Promise<RunResult> {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid) ownPids.add(child.pid);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      stderr += `\n(killed after ${timeoutMs} ms)`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('error', (error) => (stderr += String(error)));
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started, timedOut });
    });
  });
}

/** The commit the engine was built from, and whether the tree had changes. */
export function engineVersion(): string {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const head = spawnSync('git', ['-C', root, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' });
  if (head.status !== 0) return 'unknown';
  const status = spawnSync('git', ['-C', root, 'status', '--porcelain', '--', 'src-main'], { encoding: 'utf8' }).stdout.trim();
  if (status === '') return head.stdout.trim();
  // Uncommitted work: a fingerprint of the diff and the new files tells runs apart.
  const diff = spawnSync('git', ['-C', root, 'diff', 'HEAD', '--', 'src-main'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }).stdout;
  const fingerprint = createHash('sha256').update(diff).update(status);
  for (const line of status.split('\n').filter((l) => l.startsWith('??'))) {
    const path = join(root, line.slice(3));
    if (existsSync(path) && statSync(path).isFile()) fingerprint.update(readFileSync(path));
  }
  return `${head.stdout.trim()} + uncommitted changes in src-main (${status.split('\n').length} files, fingerprint ${fingerprint.digest('hex').slice(0, 12)})`;
}

/** Warnings and errors from the node's JSON log, the tail of its stderr, and its events whose type matches `events`. */
export function nodeDiagnostics(node: TestNode, events: RegExp): string {
  const parts: string[] = [];
  const logs = join(node.home, 'logs');
  try {
    const problems: string[] = [];
    for (const name of readdirSync(logs).sort()) {
      for (const line of readFileSync(join(logs, name), 'utf8').split('\n')) {
        const level = /"level":(\d+)/.exec(line)?.[1];
        if (level && Number(level) >= 40) problems.push(line.length > 600 ? `${line.slice(0, 600)}…` : line);
      }
    }
    parts.push(`${node.name} log warnings/errors (${problems.length}, last 25):\n${problems.slice(-25).join('\n') || '(none)'}`);
  } catch (error) {
    parts.push(`${node.name}: no log files (${String(error)})`);
  }
  parts.push(`${node.name} stderr (last 25 lines):\n${tail(node.output, 25) || '(empty)'}`);
  const found = node.events.filter((e) => events.test(e.type)).slice(-15);
  if (found.length > 0) parts.push(`${node.name} events:\n${found.map((e) => `${e.at} ${e.type} ${e.message}`).join('\n')}`);
  return parts.join('\n\n');
}

/** Bytes in the units the bench tables use. */
export const KiB = 1024;
export const MiB = 1024 * KiB;

/** A positive integer from `--NAME N` on the command line, or the fallback. */
export function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} needs a positive integer (got '${process.argv[i + 1] ?? ''}')`);
  return value;
}

export function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(2)} MiB`;
}

export function kib(bytes: number): string {
  return `${(bytes / KiB).toFixed(1)} KiB`;
}

/** Whether something listens on 127.0.0.1:port. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export function peakRssMiB(pid: number): number | null {
  try {
    const kb = /VmHWM:\s*(\d+)\s*kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Math.round((Number(kb) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}
