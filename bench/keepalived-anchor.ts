/**
 * keepalived as a measured anchor for bench/heartbeat.ts: how long a BACKUP keepalived takes to
 * become MASTER after its MASTER peer is killed (kill -9) or frozen (SIGSTOP), at keepalived's
 * default timing (advert_int 1, priorities 150/100, default preemption).
 *
 * Two keepalived instances run in two throwaway network namespaces joined by a veth pair and
 * talk unicast VRRP over it, so nothing leaves this machine and nothing touches the host's
 * interfaces. Each instance's `notify` script appends a nanosecond wall-clock timestamp and the
 * new state to a file: that is when keepalived itself decided to transition, which is what
 * Understudy's `peer.down` event time is compared with.
 *
 * What to expect: a BACKUP declares the MASTER dead when no advert arrived for
 * master_down_interval = 3 x advert_int + skew, skew = (256 - priority) x advert_int / 256, i.e.
 * 3 + 156/256 = 3.61 s for priority 100. The clock restarts at each advert, so measured from the
 * fault the takeover lands between 2.61 s and 3.61 s depending on where in the 1 s advert cycle
 * the fault falls (3.6 s is the documented bound the heartbeat table quotes).
 *
 * Needs Linux and root (network namespaces). Installs keepalived with apt-get when it is missing.
 * Run directly: `node dist/bench/keepalived-anchor.js [--rounds N]` measures both kinds.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { median, printTable, writeResults } from './stats.js';

export interface KeepalivedOptions {
  rounds: number;
  kind: 'kill' | 'sigstop';
}

export interface KeepalivedResult {
  /** false when this machine cannot run the anchor (not Linux, not root, no keepalived, no netns). */
  available: boolean;
  reason?: string;
  /** Fault -> BACKUP entering MASTER, one value per round, in ms. */
  detectMs: number[];
}

/** Names carry our pid so parallel runs never collide and stale leftovers can be recognised. */
const NS_PREFIX = 'usbench-ka';
const TMP_PREFIX = 'usbench-ka-';
/** The subnet only exists inside our two namespaces, so a fixed one cannot clash with the host. */
const SUBNET = '10.213.1';
const VETH = 'ka0';

/** keepalived starts as BACKUP and waits one master_down_interval (3.6 s) before taking MASTER. */
const STEADY_TIMEOUT_MS = 20_000;
/** Comfortably above the 3.61 s bound, so a timeout means something is broken, not slow. */
const TAKEOVER_TIMEOUT_MS = 15_000;

interface Transition {
  /** Wall-clock ms (same clock as Date.now()), microsecond resolution. */
  at: number;
  state: string;
}

interface Instance {
  /** 1 is the MASTER side (address .1), 2 the BACKUP side (address .2). */
  index: 1 | 2;
  ns: string;
  role: 'MASTER' | 'BACKUP';
  dir: string;
  process?: ChildProcess;
  /** Transitions older than this belong to an earlier (killed) incarnation. */
  startedAt: number;
}

// ---------------------------------------------------------------------------------------------
// Tools and installation

/** Finds a binary on PATH or in the sbin directories, which a non-login PATH may lack. */
function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  return dirs.filter(Boolean).map((dir) => join(dir, name)).find((path) => existsSync(path));
}

function run(command: string, args: string[]): { ok: boolean; output: string } {
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? String(result.error) : ''}`.trim();
  return { ok: result.status === 0, output };
}

/** Like run(), but a failure is a broken setup step worth an exception with the tool's words. */
function must(command: string, args: string[]): string {
  const { ok, output } = run(command, args);
  if (!ok) throw new Error(`${command} ${args.join(' ')} failed: ${output}`);
  return output;
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join('\n');
}

/** Returns the keepalived binary, installing it if needed, or why the anchor cannot run here. */
function ensureKeepalived(): { keepalived: string; ip: string } | { reason: string } {
  if (process.platform !== 'linux') return { reason: 'keepalived and network namespaces need Linux' };
  if (process.getuid?.() !== 0) return { reason: 'needs root to create network namespaces' };
  const ip = which('ip');
  if (!ip) return { reason: "iproute2's `ip` is not installed" };
  let keepalived = which('keepalived');
  if (!keepalived) {
    console.log('keepalived is not installed: installing it with apt-get install -y keepalived');
    const update = run('apt-get', ['update']);
    const install = update.ok ? run('apt-get', ['install', '-y', 'keepalived']) : update;
    keepalived = which('keepalived');
    if (!install.ok || !keepalived) return { reason: `could not install keepalived: ${lastLines(install.output, 3)}` };
  }
  return { keepalived, ip };
}

// ---------------------------------------------------------------------------------------------
// Namespaces, configuration and processes

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM means it exists but is not ours to signal: still alive.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A run killed with SIGKILL cannot clean up after itself; its namespaces (and the keepalived
 * processes inside, still sending adverts) are recognised by the dead pid in their name.
 */
function removeStaleLeftovers(ip: string): void {
  for (const line of run(ip, ['netns', 'list']).output.split('\n')) {
    const match = new RegExp(`^(${NS_PREFIX}[12]-(\\d+))\\b`).exec(line);
    if (!match || isAlive(Number(match[2]))) continue;
    for (const pid of run(ip, ['netns', 'pids', match[1]!]).output.split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    run(ip, ['netns', 'del', match[1]!]);
  }
  for (const entry of readdirSync(tmpdir())) {
    const match = new RegExp(`^${TMP_PREFIX}(\\d+)-`).exec(entry);
    if (match && !isAlive(Number(match[1]))) rmSync(join(tmpdir(), entry), { recursive: true, force: true });
  }
}

/** ns1 holds .1 and starts as MASTER (150); ns2 holds .2 as BACKUP (100); the VIP is .100. */
function writeConfig(instance: Instance): void {
  const own = `${SUBNET}.${instance.index}`;
  const peer = `${SUBNET}.${3 - instance.index}`;
  const notify = join(instance.dir, 'notify.sh');
  // keepalived calls `notify` with: INSTANCE <name> <state> <priority>. `date` costs ~1 ms
  // after the transition, negligible against seconds, and uses the clock Date.now() reads.
  writeFileSync(notify, `#!/bin/sh\necho "$(date +%s%N) $3" >> '${join(instance.dir, 'states')}'\n`, { mode: 0o700 });
  // Nothing here changes timing: advert_int 1 and preempt are keepalived's defaults, spelled
  // out only where the VRRP instance needs a value. Unicast because a veth pair between two
  // namespaces is all the "network" there is. script_user root silences the lookup of a
  // keepalived_script user; script security stays off since the script is ours, mode 0700.
  const config = `global_defs {
  router_id usbench_${instance.role.toLowerCase()}
  script_user root
}

vrrp_instance VI_1 {
  state ${instance.role}
  interface ${VETH}
  virtual_router_id 51
  priority ${instance.role === 'MASTER' ? 150 : 100}
  advert_int 1
  unicast_src_ip ${own}
  unicast_peer {
    ${peer}
  }
  virtual_ipaddress {
    ${SUBNET}.100/24 dev ${VETH}
  }
  notify "${notify}"
}
`;
  writeFileSync(join(instance.dir, 'keepalived.conf'), config);
}

function start(instance: Instance, tools: { keepalived: string; ip: string }): void {
  const { dir } = instance;
  // A pid file naming a dead process is harmless, but a fresh start should not depend on that.
  for (const file of ['keepalived.pid', 'vrrp.pid']) rmSync(join(dir, file), { force: true });
  const log = openSync(join(dir, 'keepalived.log'), 'a');
  instance.startedAt = Date.now();
  // `ip netns exec` execs keepalived in place, so the pid we get is keepalived's parent, and
  // `detached` makes it a process-group leader: the group holds it, its VRRP child and any
  // running notify script, which lets one signal hit all of them.
  // Separate pid files keep the two instances from taking each other for a running copy.
  instance.process = spawn(
    tools.ip,
    ['netns', 'exec', instance.ns, tools.keepalived, '--dont-fork', '--log-console', '--no-syslog', '--vrrp',
      '-f', join(dir, 'keepalived.conf'), `--pid=${join(dir, 'keepalived.pid')}`, `--vrrp_pid=${join(dir, 'vrrp.pid')}`],
    { detached: true, stdio: ['ignore', log, log] },
  );
  closeSync(log);
}

function signalGroup(instance: Instance, signal: NodeJS.Signals): void {
  const pid = instance.process?.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is already gone.
  }
}

function exited(instance: Instance): Promise<void> {
  const child = instance.process;
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function transitions(instance: Instance): Transition[] {
  let text: string;
  try {
    text = readFileSync(join(instance.dir, 'states'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter(([ns, state]) => ns !== undefined && /^\d+$/.test(ns) && state !== undefined)
    // Nanoseconds exceed 2^53; dividing as BigInt first keeps microsecond precision.
    .map(([ns, state]) => ({ at: Number(BigInt(ns!) / 1000n) / 1000, state: state! }))
    .filter((t) => t.at >= instance.startedAt);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined, logs: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`keepalived anchor: timed out after ${timeoutMs} ms waiting for ${what}\n${logs()}`);
    await sleep(10);
  }
}

// ---------------------------------------------------------------------------------------------
// The measurement

export async function measureKeepalived(options: KeepalivedOptions): Promise<KeepalivedResult> {
  const { rounds, kind } = options;
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`rounds must be a positive integer, got ${rounds}`);
  const tools = ensureKeepalived();
  if ('reason' in tools) return { available: false, reason: tools.reason, detectMs: [] };
  removeStaleLeftovers(tools.ip);

  const root = mkdtempSync(join(tmpdir(), `${TMP_PREFIX}${process.pid}-`));
  const instances: [Instance, Instance] = [
    { index: 1, ns: `${NS_PREFIX}1-${process.pid}`, role: 'MASTER', dir: join(root, 'ns1'), startedAt: 0 },
    { index: 2, ns: `${NS_PREFIX}2-${process.pid}`, role: 'BACKUP', dir: join(root, 'ns2'), startedAt: 0 },
  ];
  const [master, backup] = instances;
  const created: string[] = [];

  // Synchronous so that it can also run from a signal handler, where nothing async finishes.
  // SIGKILL reaches a stopped process too, so a frozen instance cannot outlive us.
  const cleanup = (): void => {
    for (const instance of instances) signalGroup(instance, 'SIGKILL');
    for (const ns of created) run(tools.ip, ['netns', 'del', ns]);
    rmSync(root, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    cleanup();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const readLog = (instance: Instance): string => {
    try {
      return readFileSync(join(instance.dir, 'keepalived.log'), 'utf8');
    } catch {
      return '(no log)';
    }
  };
  // Attached to timeout errors: keepalived's own account of its states says what went wrong.
  const logs = (): string =>
    instances.map((i) => `--- ${i.ns} keepalived.log (tail)\n${lastLines(readLog(i), 8)}`).join('\n');
  const lastState = (instance: Instance): string | undefined => transitions(instance).at(-1)?.state;
  // ns2's last word being BACKUP also means it has handed back after a takeover in a previous
  // round, since a takeover always leaves MASTER as its last word.
  const steady = (): true | undefined => (lastState(master) === 'MASTER' && lastState(backup) === 'BACKUP' ? true : undefined);

  try {
    for (const instance of instances) {
      const added = run(tools.ip, ['netns', 'add', instance.ns]);
      if (!added.ok) return { available: false, reason: `cannot create a network namespace: ${added.output}`, detectMs: [] };
      created.push(instance.ns);
    }
    // Creating the veth inside ns1 with its peer straight in ns2 never puts an interface in
    // the host's namespace, not even for a moment, and the same name can serve both ends.
    must(tools.ip, ['-n', master.ns, 'link', 'add', VETH, 'type', 'veth', 'peer', 'name', VETH, 'netns', backup.ns]);
    for (const instance of instances) {
      must(tools.ip, ['-n', instance.ns, 'addr', 'add', `${SUBNET}.${instance.index}/24`, 'dev', VETH]);
      must(tools.ip, ['-n', instance.ns, 'link', 'set', 'lo', 'up']);
      must(tools.ip, ['-n', instance.ns, 'link', 'set', VETH, 'up']);
    }
    for (const instance of instances) {
      mkdirSync(instance.dir);
      writeConfig(instance);
      start(instance, tools);
    }
    await waitFor('ns1 MASTER and ns2 BACKUP at start', STEADY_TIMEOUT_MS, steady, logs);

    const detectMs: number[] = [];
    for (let round = 0; round < rounds; round++) {
      // A real failure strikes at any point of the 1 s advert cycle, and where it strikes moves
      // the result by up to a second; a random wait samples that phase instead of always
      // hitting the same one. The first second guarantees ns2 has heard ns1 advertise as MASTER.
      await sleep(1000 + Math.random() * 1000);

      const faultAt = Date.now();
      // kill: the VRRP child sends the adverts, and killing only it would make the parent
      // respawn it, so the whole group goes at once, as a machine losing power would.
      // sigstop: freezing the whole group is a hung keepalived; a frozen parent alone would
      // change nothing on the wire.
      signalGroup(master, kind === 'kill' ? 'SIGKILL' : 'SIGSTOP');
      const takeover = await waitFor(
        `ns2 to become MASTER after ${kind} (round ${round + 1})`,
        TAKEOVER_TIMEOUT_MS,
        () => transitions(backup).find((t) => t.state === 'MASTER' && t.at > faultAt),
        logs,
      );
      detectMs.push(Math.round(takeover.at - faultAt));

      // Restore: ns1 takes MASTER back by default preemption (priority 150 > 100); after a
      // restart that takes one master_down_interval, after SIGCONT its next advert.
      if (kind === 'kill') {
        await exited(master);
        start(master, tools);
      } else {
        signalGroup(master, 'SIGCONT');
      }
      await waitFor(`ns1 MASTER again after round ${round + 1}`, STEADY_TIMEOUT_MS, steady, logs);
    }
    return { available: true, detectMs };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanup();
    await Promise.all(instances.map(exited));
  }
}

// ---------------------------------------------------------------------------------------------
// CLI: node dist/bench/keepalived-anchor.js [--rounds N]

async function main(): Promise<void> {
  const i = process.argv.indexOf('--rounds');
  const rounds = i >= 0 ? Number(process.argv[i + 1]) : 3;
  const startedAt = Date.now();
  const results: Record<string, KeepalivedResult> = {};
  for (const kind of ['kill', 'sigstop'] as const) {
    const result = await measureKeepalived({ rounds, kind });
    if (!result.available) {
      console.log(`keepalived anchor unavailable: ${result.reason}`);
      process.exitCode = 2;
      return;
    }
    results[kind] = result;
  }
  printTable(
    Object.entries(results).map(([kind, { detectMs }]) => ({
      measure: `keepalived ${kind === 'kill' ? 'kill -9' : 'SIGSTOP'} -> backup MASTER (ms)`,
      runs: detectMs.length,
      rounds: detectMs.join(' '),
      median: median(detectMs),
      min: Math.min(...detectMs),
      max: Math.max(...detectMs),
      'documented bound': 3609,
    })),
  );
  const path = writeResults('keepalived', {
    date: new Date().toISOString(),
    settings: { advertIntSeconds: 1, priorities: [150, 100], rounds, transport: 'unicast VRRP over a veth pair between two network namespaces' },
    killToMasterMs: results.kill?.detectMs,
    stopToMasterMs: results.sigstop?.detectMs,
  });
  console.log(`\nwrote ${path} (total ${((Date.now() - startedAt) / 1000).toFixed(1)} s)`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(`bench:keepalived: ${(error as Error).message}`);
    process.exitCode = 1;
  });
}
