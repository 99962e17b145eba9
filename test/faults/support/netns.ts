/**
 * A network-namespace lab for fault injection: one namespace per member, all joined through a
 * Linux bridge that lives in a dedicated switch namespace, so nothing is added to the host's
 * own network namespace and parallel or stale runs never see each other.
 *
 * Layout of a lab made by createLab(['a', 'b']) in process 1234 (the lab's sequence number 1):
 *
 *   us-1234-1-switch   br0, with one port v0, v1, ... per member
 *   us-1234-1-a        lo, eth0 = 10.77.0.10/24 (veth, its peer is v0 in the switch)
 *   us-1234-1-b        lo, eth0 = 10.77.0.11/24 (veth, its peer is v1 in the switch)
 *
 * Faults are nftables rules inside the members' namespaces, on a netdev ingress chain of eth0:
 * a cut link from X to Y is a rule in Y dropping every non-ARP frame whose source MAC is X's.
 * Matching on the MAC, not on an IP address, also catches traffic X sends from a virtual IP it
 * holds (keepalived's, `understudy vip`). ARP keeps passing on purpose: the cut is a firewall
 * that drops packets, not a pulled cable, so neighbour entries stay valid and a one-way cut
 * stays one-way (with ARP dropped, the reverse direction would die at its next ARP refresh).
 * Dropping on arrival also keeps the sender unaware, as on a real network (a drop in the output
 * hook would hand the sender an EPERM instead).
 *
 * Needs Linux, root, iproute2 (`ip`) and nftables (`nft`); labSupport() says why not.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** Namespace names start with this, then `<pid>-<lab sequence>-`; stale ones are found by the pid. */
export const NamespacePrefix = 'us-';
/** Every member's interface toward the switch has this name inside its own namespace. */
export const LabInterface = 'eth0';
/** Members get host numbers from here up: .10, .11, ... Host numbers from 100 up are free for virtual IPs. */
export const FirstHostNumber = 10;
/** The default first three octets of the lab's /24. Each lab is sealed in its own namespaces, so labs can share it. */
export const DefaultSubnet = '10.77.0';

const SwitchName = 'switch';
const NftTable = 'understudy_faults';
const StaleName = new RegExp(`^${NamespacePrefix}(\\d+)-\\d+-[a-z0-9_]+$`);

export interface LabOptions {
  /** First three octets of the lab's /24. @default DefaultSubnet ('10.77.0') */
  subnet?: string;
}

export interface FlapOptions {
  /** How long each outage lasts. */
  downMs: number;
  /** How long the link is up between two outages. */
  upMs: number;
  /** Number of outages. The link is down first and up again when the promise resolves. */
  times: number;
  /** Stops flapping early; the link is restored before the promise resolves. */
  signal?: AbortSignal;
}

export interface ExecOptions {
  /** Written to the command's standard input. */
  input?: string;
  /** Kills the command (SIGKILL) and rejects after this long. @default 30000 */
  timeoutMs?: number;
}

export interface Lab {
  /** The members' names, as given to createLab. */
  readonly names: readonly string[];
  /** The first three octets of the lab's /24, e.g. '10.77.0'. */
  readonly subnet: string;
  /** Prefix length of every member's address. */
  readonly prefixLength: 24;
  /** The bridge's namespace (holds br0 and one port per member). */
  readonly switchNamespace: string;
  /** The member's namespace name, usable with `ip -n` and `ip netns exec`. Throws for an unknown name. */
  namespace(name: string): string;
  /** The member's IPv4 address (without prefix length), e.g. '10.77.0.10'. */
  address(name: string): string;
  /** The MAC address of the member's eth0. */
  mac(name: string): string;
  /**
   * The argv prefix that runs a command inside the member's namespace: ['ip', 'netns', 'exec', ns].
   * `ip netns exec` execs the command in place, so a child spawned with it has the command's own
   * pid: signals (SIGKILL, SIGSTOP) reach the command itself.
   */
  prefix(name: string): string[];
  /** Runs a command inside the member's namespace to completion; resolves with its stdout, rejects (with stderr) on a non-zero exit. */
  exec(name: string, command: string, args: string[], options?: ExecOptions): Promise<string>;
  /**
   * Starts a long-running command inside the member's namespace. The lab remembers the child and
   * kills it in destroy(); stdio defaults to ['ignore', 'pipe', 'pipe'].
   */
  spawn(name: string, command: string, args: string[], options?: SpawnOptions): ChildProcess;
  /** Drops all traffic between a and b, both directions. Idempotent; adds to cuts already in place. */
  partition(a: string, b: string): Promise<void>;
  /** Drops all traffic between a and every other member, both directions. */
  isolate(a: string): Promise<void>;
  /** Drops packets travelling from `from` to `to`; packets from `to` to `from` still arrive. */
  oneWay(from: string, to: string): Promise<void>;
  /** Without arguments removes every cut; with two members removes the cuts between them (both directions). */
  heal(a?: string, b?: string): Promise<void>;
  /**
   * Partitions a and b `times` times for downMs each, with upMs of connectivity between outages,
   * and resolves with the link up. Ends early (and quietly) when aborted or when the lab is destroyed.
   */
  flap(a: string, b: string, options: FlapOptions): Promise<void>;
  /** The directed cuts in place, as [from, to] pairs. */
  cuts(): [string, string][];
  /**
   * Kills every process inside the lab's namespaces (the ones spawn() started and any other,
   * such as one started with prefix()) and deletes the namespaces, which removes the veths, the
   * bridge and the rules with them. Idempotent, never throws. Also runs by itself when the
   * process exits or gets SIGINT/SIGTERM, so a failing test cannot leave the lab behind.
   */
  destroy(): Promise<void>;
}

/** Finds a binary on PATH or in the sbin directories, which a non-login PATH may lack. */
export function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];
  return dirs.filter(Boolean).map((dir) => join(dir, name)).find((path) => existsSync(path));
}

/** Why a lab cannot be made on this machine, or undefined when it can. */
export function labSupport(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root (run the fault suite as root)';
  if (!which('ip')) return "iproute2's `ip` is not installed";
  if (!which('nft')) return 'nftables (`nft`) is not installed';
  return undefined;
}

function ipBinary(): string {
  return which('ip') ?? 'ip';
}

function nftBinary(): string {
  return which('nft') ?? 'nft';
}

/** Runs a command to completion; resolves with stdout, rejects with the command line and stderr. */
function runCommand(command: string, args: string[], options: ExecOptions = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      stderr += `\n(killed after ${options.timeoutMs ?? 30_000} ms)`;
    }, options.timeoutMs ?? 30_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`${command} ${args.join(' ')}: ${error.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code ?? signal}: ${stderr.trim() || stdout.trim()}`));
    });
    // A command that does not read its stdin closes it early: an EPIPE here is not our error.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

function runSync(command: string, args: string[]): { ok: boolean; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  return { ok: result.status === 0, output: `${result.stdout ?? ''}${result.stderr ?? ''}`.trim() };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours to signal.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** Kills what runs inside a namespace and deletes it. Synchronous so it can run from an 'exit' handler. */
function removeNamespaceSync(ns: string): void {
  const ip = ipBinary();
  for (let attempt = 0; attempt < 3; attempt++) {
    const pids = runSync(ip, ['netns', 'pids', ns]).output.split(/\s+/).filter((pid) => /^\d+$/.test(pid));
    if (pids.length === 0) break;
    // SIGCONT first: a process frozen by a test (SIGSTOP) still dies from SIGKILL, but say it anyway.
    for (const pid of pids) killQuietly(Number(pid), 'SIGCONT');
    for (const pid of pids) killQuietly(Number(pid));
    spawnSync('sleep', ['0.05']);
  }
  runSync(ip, ['netns', 'del', ns]);
}

function listNamespaces(): string[] {
  return runSync(ipBinary(), ['netns', 'list'])
    .output.split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/**
 * Removes the namespaces (and the processes in them) of labs whose process is gone: a run
 * killed with SIGKILL could not clean up. Returns the names removed. createLab calls it.
 */
export function cleanStaleLabs(): string[] {
  const removed: string[] = [];
  for (const ns of listNamespaces()) {
    const match = StaleName.exec(ns);
    if (!match || isAlive(Number(match[1]))) continue;
    removeNamespaceSync(ns);
    removed.push(ns);
  }
  return removed;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

let labSequence = 0;

/**
 * Creates one namespace per name, joined through a bridge, each with its own address and
 * loopback up. Names: lowercase letters, digits and '_', starting with a letter, at most 16
 * characters, not 'switch'. Removes stale labs first. On a failure half-way it removes what it
 * made and rethrows.
 */
export async function createLab(names: string[], options: LabOptions = {}): Promise<Lab> {
  const unsupported = labSupport();
  if (unsupported) throw new Error(`cannot create a network lab: ${unsupported}`);
  if (names.length === 0) throw new Error('createLab: give at least one name');
  if (names.length > 90) throw new Error('createLab: at most 90 members (host numbers 10..99)');
  for (const name of names) {
    if (!/^[a-z][a-z0-9_]{0,15}$/.test(name) || name === SwitchName) throw new Error(`createLab: '${name}' is not a usable member name`);
  }
  if (new Set(names).size !== names.length) throw new Error(`createLab: duplicate names in ${names.join(', ')}`);
  const subnet = options.subnet ?? DefaultSubnet;
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`createLab: subnet '${subnet}' is not three octets like 10.77.0`);

  cleanStaleLabs();
  const ip = ipBinary();
  const nft = nftBinary();
  const base = `${NamespacePrefix}${process.pid}-${++labSequence}`;
  const switchNs = `${base}-${SwitchName}`;
  const nsOf = new Map(names.map((name) => [name, `${base}-${name}`]));
  const addressOf = new Map(names.map((name, i) => [name, `${subnet}.${FirstHostNumber + i}`]));
  const macOf = new Map<string, string>();
  const created: string[] = [];
  const children = new Set<ChildProcess>();
  /** Directed cuts, keyed `from>to`. */
  const cuts = new Map<string, [string, string]>();
  let destroyed = false;
  /** Serialises rule updates: two concurrent partition() calls must not interleave their nft loads. */
  let updates: Promise<void> = Promise.resolve();

  const member = (name: string): string => {
    const ns = nsOf.get(name);
    if (!ns) throw new Error(`lab has no member '${name}' (members: ${names.join(', ')})`);
    return ns;
  };

  const destroySync = (): void => {
    if (destroyed) return;
    destroyed = true;
    process.off('exit', destroySync);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    for (const child of children) if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) killQuietly(child.pid);
    // Members first: the switch holds the veth peers, which go away with either end anyway.
    for (const ns of [...created].reverse()) removeNamespaceSync(ns);
  };
  // A signal handler replaces Node's default exit, so clean up and then die of the same signal.
  const onSignal = (signal: NodeJS.Signals): void => {
    destroySync();
    process.kill(process.pid, signal);
  };
  process.on('exit', destroySync);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    for (const ns of [switchNs, ...nsOf.values()]) {
      await runCommand(ip, ['netns', 'add', ns]);
      created.push(ns);
    }
    await runCommand(ip, ['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await runCommand(ip, ['-n', switchNs, 'link', 'set', 'br0', 'up']);
    let index = 0;
    for (const name of names) {
      const ns = member(name);
      const port = `v${index++}`;
      // Made inside the member's namespace with the peer sent straight to the switch: no
      // interface ever appears in the host's namespace, not even for a moment.
      await runCommand(ip, ['-n', ns, 'link', 'add', LabInterface, 'type', 'veth', 'peer', 'name', port, 'netns', switchNs]);
      await runCommand(ip, ['-n', switchNs, 'link', 'set', port, 'master', 'br0']);
      await runCommand(ip, ['-n', switchNs, 'link', 'set', port, 'up']);
      await runCommand(ip, ['-n', ns, 'addr', 'add', `${addressOf.get(name)}/24`, 'dev', LabInterface]);
      await runCommand(ip, ['-n', ns, 'link', 'set', 'lo', 'up']);
      await runCommand(ip, ['-n', ns, 'link', 'set', LabInterface, 'up']);
      const link = JSON.parse(await runCommand(ip, ['-n', ns, '-j', 'link', 'show', LabInterface])) as { address?: string }[];
      const mac = link[0]?.address;
      if (!mac) throw new Error(`no MAC address on ${LabInterface} in ${ns}`);
      macOf.set(name, mac);
    }
  } catch (error) {
    destroySync();
    throw error;
  }

  /** The whole ruleset of one member, loaded in one nft transaction (add + delete + add makes it idempotent). */
  const rulesFor = (to: string): string => {
    const drops = [...cuts.values()]
      .filter(([, target]) => target === to)
      .map(([from]) => `    ether saddr ${macOf.get(from)} ether type != arp counter drop comment "cut from ${from}"`);
    const lines = [`table netdev ${NftTable} {}`, `delete table netdev ${NftTable}`];
    if (drops.length > 0) {
      lines.push(
        `table netdev ${NftTable} {`,
        `  chain ingress {`,
        `    type filter hook ingress device "${LabInterface}" priority -500; policy accept;`,
        ...drops,
        `  }`,
        `}`,
      );
    }
    return `${lines.join('\n')}\n`;
  };

  const apply = (change: () => void): Promise<void> => {
    const next = updates.then(async () => {
      if (destroyed) throw new Error('the lab was destroyed');
      const before = new Set(cuts.keys());
      change();
      const touched = new Set<string>();
      for (const key of new Set([...before, ...cuts.keys()])) if (before.has(key) !== cuts.has(key)) touched.add(key.split('>')[1]!);
      await Promise.all([...touched].map((to) => runCommand(ip, ['netns', 'exec', member(to), nft, '-f', '-'], { input: rulesFor(to) })));
    });
    // A failed update must not block the ones after it.
    updates = next.catch(() => {});
    return next;
  };

  const cut = (from: string, to: string): void => {
    member(from);
    member(to);
    if (from !== to) cuts.set(`${from}>${to}`, [from, to]);
  };

  const lab: Lab = {
    names: [...names],
    subnet,
    prefixLength: 24,
    switchNamespace: switchNs,
    namespace: member,
    address(name) {
      member(name);
      return addressOf.get(name)!;
    },
    mac(name) {
      member(name);
      return macOf.get(name)!;
    },
    prefix(name) {
      return [ip, 'netns', 'exec', member(name)];
    },
    exec(name, command, args, options) {
      return runCommand(ip, ['netns', 'exec', member(name), command, ...args], options);
    },
    spawn(name, command, args, options = {}) {
      if (destroyed) throw new Error('the lab was destroyed');
      const child = spawn(ip, ['netns', 'exec', member(name), command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    partition(a, b) {
      return apply(() => {
        cut(a, b);
        cut(b, a);
      });
    },
    isolate(a) {
      return apply(() => {
        for (const other of names) {
          cut(a, other);
          cut(other, a);
        }
      });
    },
    oneWay(from, to) {
      return apply(() => cut(from, to));
    },
    heal(a, b) {
      if ((a === undefined) !== (b === undefined)) return Promise.reject(new Error('heal: give two members, or none to heal everything'));
      return apply(() => {
        if (a === undefined || b === undefined) return cuts.clear();
        member(a);
        member(b);
        cuts.delete(`${a}>${b}`);
        cuts.delete(`${b}>${a}`);
      });
    },
    async flap(a, b, { downMs, upMs, times, signal }) {
      try {
        for (let i = 0; i < times && !signal?.aborted && !destroyed; i++) {
          await lab.partition(a, b);
          await sleep(downMs, signal);
          await lab.heal(a, b);
          if (i < times - 1) await sleep(upMs, signal);
        }
      } catch (error) {
        // A lab destroyed under a running flap (a test's cleanup after a failure) ends it quietly.
        if (!destroyed) throw error;
      }
    },
    cuts() {
      return [...cuts.values()].map(([from, to]) => [from, to]);
    },
    async destroy() {
      if (destroyed) return;
      await updates;
      const waits = [...children].map((child) => new Promise<void>((resolve) => child.once('exit', () => resolve())));
      destroySync();
      // Reap our own children so no zombie or open pipe outlives the lab (bounded: they got SIGKILL).
      await Promise.race([Promise.all(waits), sleep(2000)]);
    },
  };
  return lab;
}
