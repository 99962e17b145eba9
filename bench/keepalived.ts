/**
 * Anchor for the failover benchmark: how long a keepalived VRRP pair at its default timing
 * takes to move its virtual IP after the MASTER's keepalived dies (kill -9), measured the way a
 * client would notice it: from the kill until the BACKUP's namespace holds the VIP.
 *
 * Two keepalived processes run in the foreground, each in its own namespace of a lab
 * (test/faults/support/netns.ts) on the lab's bridge: ka1 (priority 150, starts MASTER) and
 * ka2 (priority 100, BACKUP), advert_int 1, default preemption, VIP <subnet>.100/24. VRRP goes
 * multicast (224.0.0.18) over the bridge, or unicast with --unicast.
 *
 * Expected: the BACKUP takes over once no advert came for master_down_interval =
 * 3 x advert_int + (256 - priority) x advert_int / 256 = 3.609 s at priority 100. Its timer
 * restarts at each advert (every 1 s), so from a kill at a random phase the takeover lands in
 * about 2.6..3.6 s. The VIP poll (`ip -n NS addr show` every 10 ms) adds up to ~15 ms.
 *
 * Between trials the killed MASTER's VIP is removed (a machine that lost power comes back
 * without it), its keepalived is restarted, and the next trial waits until it holds the VIP
 * again and the BACKUP has let go of it (preemption, about 3.4 s).
 *
 * Needs Linux, root, iproute2, nftables and keepalived (`apt-get install keepalived`).
 * Run: `node dist/bench/keepalived.js [--trials N] [--unicast]` (default 5 trials).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLab, labSupport, LabInterface, which, type Lab } from '../test/faults/support/netns.js';
import { median, printTable } from './stats.js';

export type VrrpTransport = 'multicast' | 'unicast';

export interface KeepalivedTakeoverOptions {
  /** How VRRP adverts travel between the two instances. @default 'multicast' */
  transport?: VrrpTransport;
  /** Progress lines. @default nothing */
  log?: (line: string) => void;
}

/** keepalived's defaults, spelled out: they are what the anchor is about. */
export const AdvertIntSeconds = 1;
export const MasterPriority = 150;
export const BackupPriority = 100;
/** master_down_interval of the BACKUP: 3 x advert_int + skew, skew = (256 - priority) x advert_int / 256. */
export const BackupDownIntervalMs = Math.round((3 * AdvertIntSeconds + ((256 - BackupPriority) * AdvertIntSeconds) / 256) * 1000);

const PollMs = 10;
/** Start (or restart and preempt) takes ~3.5 s; far above that means something is broken. */
const SteadyTimeoutMs = 20_000;
const TakeoverTimeoutMs = 15_000;
const VipHost = 100;

interface Instance {
  name: 'ka1' | 'ka2';
  priority: number;
  state: 'MASTER' | 'BACKUP';
  dir: string;
  process?: ChildProcess;
  exited?: Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function tail(text: string, lines: number): string {
  return text.trim().split('\n').slice(-lines).join('\n');
}

function writeConfig(lab: Lab, instance: Instance, peer: Instance, vip: string, transport: VrrpTransport): string {
  const unicast =
    transport === 'unicast'
      ? `  unicast_src_ip ${lab.address(instance.name)}
  unicast_peer {
    ${lab.address(peer.name)}
  }
`
      : '';
  const config = `global_defs {
  router_id ${instance.name}
}

vrrp_instance VI_1 {
  state ${instance.state}
  interface ${LabInterface}
  virtual_router_id 51
  priority ${instance.priority}
  advert_int ${AdvertIntSeconds}
${unicast}  virtual_ipaddress {
    ${vip}/24 dev ${LabInterface}
  }
}
`;
  const path = join(instance.dir, 'keepalived.conf');
  writeFileSync(path, config);
  return path;
}

/** Does the member's namespace hold the VIP on its lab interface? One `ip` run (~3 ms). */
async function holdsVip(lab: Lab, name: string, vip: string): Promise<boolean> {
  return (await run('ip', ['-n', lab.namespace(name), '-4', '-o', 'addr', 'show', 'dev', LabInterface])).includes(` ${vip}/`);
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`${command} ${args.join(' ')}: ${stderr.trim()}`))));
  });
}

/**
 * Runs `trials` kill -9 takeovers of a keepalived pair and returns, per trial, the ms from the
 * kill of the MASTER's keepalived until the BACKUP's namespace held the VIP. Throws when this
 * machine cannot run it (the message says why) or when a step times out (with keepalived's logs).
 */
export async function measureKeepalivedTakeover(trials: number, options: KeepalivedTakeoverOptions = {}): Promise<number[]> {
  if (!Number.isInteger(trials) || trials < 1) throw new Error(`trials must be a positive integer, got ${trials}`);
  const unsupported = labSupport();
  if (unsupported) throw new Error(`keepalived anchor: ${unsupported}`);
  const keepalived = which('keepalived');
  if (!keepalived) throw new Error('keepalived anchor: keepalived is not installed (apt-get install -y keepalived)');
  const transport = options.transport ?? 'multicast';
  const log = options.log ?? (() => {});

  const root = mkdtempSync(join(tmpdir(), `understudy-keepalived-${process.pid}-`));
  const lab = await createLab(['ka1', 'ka2']);
  const vip = `${lab.subnet}.${VipHost}`;
  const master: Instance = { name: 'ka1', priority: MasterPriority, state: 'MASTER', dir: join(root, 'ka1') };
  const backup: Instance = { name: 'ka2', priority: BackupPriority, state: 'BACKUP', dir: join(root, 'ka2') };
  const instances = [master, backup];

  const logs = (): string =>
    instances
      .map((instance) => {
        let text = '(no log)';
        try {
          text = tail(readFileSync(join(instance.dir, 'keepalived.log'), 'utf8'), 10);
        } catch {
          // Not started yet.
        }
        return `--- ${instance.name} keepalived.log (tail)\n${text}`;
      })
      .join('\n');

  const start = (instance: Instance): void => {
    const conf = join(instance.dir, 'keepalived.conf');
    // Distinct pid files for the parent and both children, or the second instance would take
    // the first for an already running copy and quit.
    for (const file of ['keepalived.pid', 'vrrp.pid', 'checkers.pid']) rmSync(join(instance.dir, file), { force: true });
    const logFd = openSync(join(instance.dir, 'keepalived.log'), 'a');
    // -n foreground, -l log to the console (here: the log file), -D detailed, -G no syslog, -P VRRP only.
    // detached: keepalived (ip netns exec execs it in place) leads a process group that holds
    // its VRRP child too, so one kill -9 of the group takes the whole instance down, as a
    // power loss would. Killing the parent alone would let the child notice and resign
    // cleanly (priority 0 advert), which is a fast, polite handover rather than a crash.
    const child = lab.spawn(
      instance.name,
      keepalived,
      ['-n', '-l', '-D', '-G', '-P', '-f', conf, '-p', join(instance.dir, 'keepalived.pid'), '-r', join(instance.dir, 'vrrp.pid'), '-c', join(instance.dir, 'checkers.pid')],
      { detached: true, stdio: ['ignore', logFd, logFd] },
    );
    closeSync(logFd);
    instance.process = child;
    instance.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  };

  const killGroup = (instance: Instance): void => {
    const pid = instance.process?.pid;
    if (pid === undefined) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  };

  const waitFor = async <T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const began = performance.now();
      const value = await probe();
      if (value !== undefined) return value;
      for (const instance of instances) {
        if (instance.process && instance.process.exitCode !== null && instance !== master) throw new Error(`keepalived ${instance.name} exited while waiting for ${what}\n${logs()}`);
      }
      if (performance.now() > deadline) throw new Error(`keepalived anchor: timed out after ${timeoutMs} ms waiting for ${what}\n${logs()}`);
      await sleep(Math.max(0, PollMs - (performance.now() - began)));
    }
  };

  /** ka1 holds the VIP and ka2 does not: the roles the trial starts from. */
  const steady = async (): Promise<true | undefined> => {
    const [one, two] = await Promise.all([holdsVip(lab, 'ka1', vip), holdsVip(lab, 'ka2', vip)]);
    return one && !two ? true : undefined;
  };

  try {
    for (const instance of instances) mkdirSync(instance.dir);
    writeConfig(lab, master, backup, vip, transport);
    writeConfig(lab, backup, master, vip, transport);
    for (const instance of instances) start(instance);
    log(`keepalived ${transport} VRRP: ka1 ${lab.address('ka1')} (priority ${MasterPriority}), ka2 ${lab.address('ka2')} (priority ${BackupPriority}), VIP ${vip}`);
    await waitFor('ka1 to hold the VIP and ka2 not', SteadyTimeoutMs, steady);

    const takeovers: number[] = [];
    for (let trial = 1; trial <= trials; trial++) {
      // A real crash falls anywhere in the 1 s advert cycle, which moves the result by up to a
      // second: a random wait samples the phase instead of hitting the same one every time.
      await sleep(1000 + Math.random() * 1000);
      const killedAt = performance.now();
      killGroup(master);
      const tookOver = await waitFor(`ka2 to hold the VIP (trial ${trial})`, TakeoverTimeoutMs, async () =>
        (await holdsVip(lab, 'ka2', vip)) ? performance.now() : undefined,
      );
      const ms = Math.round(tookOver - killedAt);
      takeovers.push(ms);
      log(`trial ${trial}/${trials}: kill -9 of the MASTER -> VIP on the BACKUP in ${ms} ms`);

      await master.exited;
      // The dead MASTER's VIP is still on its interface (nobody removed it); a rebooted
      // machine would come back without it.
      await run('ip', ['-n', lab.namespace('ka1'), 'addr', 'del', `${vip}/24`, 'dev', LabInterface]).catch(() => undefined);
      start(master);
      if (trial < trials) await waitFor(`ka1 to take the VIP back after trial ${trial}`, SteadyTimeoutMs, steady);
    }
    return takeovers;
  } finally {
    for (const instance of instances) killGroup(instance);
    await Promise.race([Promise.all(instances.map((instance) => instance.exited)), sleep(2000)]);
    await lab.destroy();
    rmSync(root, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// CLI: node dist/bench/keepalived.js [--trials N] [--unicast]

async function main(): Promise<void> {
  const i = process.argv.indexOf('--trials');
  const trials = i >= 0 ? Number(process.argv[i + 1]) : 5;
  const transport: VrrpTransport = process.argv.includes('--unicast') ? 'unicast' : 'multicast';
  const startedAt = performance.now();
  const takeovers = await measureKeepalivedTakeover(trials, {
    transport,
    log: (line) => console.log(`[${new Date().toISOString().slice(11, 23)}] ${line}`),
  });
  console.log();
  printTable([
    {
      measure: `keepalived kill -9 MASTER -> VIP on BACKUP (ms, ${transport})`,
      trials: takeovers.length,
      values: takeovers.join(' '),
      median: median(takeovers),
      min: Math.min(...takeovers),
      max: Math.max(...takeovers),
      'bound (3 x advert + skew)': BackupDownIntervalMs,
    },
  ]);
  console.log(`\ntotal ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    console.error(`keepalived anchor: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  });
}
