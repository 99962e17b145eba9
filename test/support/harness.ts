/**
 * Real `understudy` processes for integration tests: each node in its own temporary home,
 * driven through the CLI and watched through its control socket.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandName, CommandParams, CommandResult, EventRecord, StatusReport } from '../../src-main/contract/control.js';
import { ControlClient } from '../../src-main/engine/control/control-client.js';

export const CliPath = fileURLToPath(new URL('../../src-main/cli/main.js', import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion; `prefix` (e.g. ['ip', 'netns', 'exec', NS]) runs it through that command. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, prefix: string[] = []): Promise<CliResult> {
  const argv = [...prefix, process.execPath, CliPath, ...args];
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

let nextPort = 20000 + (process.pid % 200) * 100;

/** A port P such that P and P+1 are both free on host (a node uses both). */
export async function freePortPair(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const port = nextPort;
    nextPort += 2;
    if (nextPort > 60000) nextPort = 20000;
    if ((await portFree(port, host)) && (await portFree(port + 1, host))) return port;
  }
  throw new Error('no free port pair found');
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `understudy-${prefix}-`));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until check returns a value other than undefined, or fails after timeoutMs. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 10_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${String(lastError)})` : ''}`);
    await sleep(everyMs);
  }
}

/**
 * Where a node runs, for tests that place nodes elsewhere than on loopback, for example each in
 * its own network namespace (test/faults/support/netns.ts): { host: lab.address('a'),
 * prefix: lab.prefix('a') }. Every field is optional; without a placement a node runs as before.
 */
export interface NodePlacement {
  /** Address the node listens on. @default '127.0.0.1' */
  host?: string;
  /** Peer port P (heartbeats on P + 1). @default a free pair on host; DefaultPrefixedPort behind a prefix, where the host's port check cannot see */
  port?: number;
  /** argv prefix for `serve` and every CLI call of this node, e.g. ['ip', 'netns', 'exec', NS]. @default [] */
  prefix?: string[];
}

/** The peer port of a node behind a prefix when none is given: a fresh namespace has every port free. */
export const DefaultPrefixedPort = 7400;

export class TestNode {
  readonly home: string;
  process: ChildProcess | null = null;
  output = '';
  private client: ControlClient | null = null;
  readonly events: EventRecord[] = [];
  private lastEventId = 0;
  private exited: Promise<number | null> | null = null;

  private constructor(
    readonly name: string,
    readonly port: number,
    readonly host = '127.0.0.1',
    /** argv prefix every process of this node runs through (see NodePlacement). */
    readonly prefix: string[] = [],
  ) {
    this.home = join(tempDir(name), 'home');
  }

  /** Creates (init) a node with its own home on a free port pair (or where `placement` says). */
  static async create(name: string, placement: NodePlacement = {}): Promise<TestNode> {
    const host = placement.host ?? '127.0.0.1';
    const prefix = placement.prefix ?? [];
    const port = placement.port ?? (prefix.length > 0 ? DefaultPrefixedPort : await freePortPair(host));
    const node = new TestNode(name, port, host, prefix);
    const result = await node.cli('init', '--name', name, '--listen', node.address);
    if (result.code !== 0) throw new Error(`init failed: ${result.stderr}`);
    return node;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  cli(...args: string[]): Promise<CliResult> {
    return runCli([...args, '--home', this.home], {}, this.prefix);
  }

  /** Starts `understudy serve` and waits until its control socket answers. */
  async serve(extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}, command: 'serve' | 'witness' = 'serve'): Promise<void> {
    this.output = '';
    // Behind `ip netns exec` the pid is still the node's: ip execs it in place, so signals reach it.
    const argv = [...this.prefix, process.execPath, CliPath, command, '--home', this.home, ...extraArgs];
    const child = spawn(argv[0]!, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Many nodes share this machine: each web console on a port of its own.
      env: { ...process.env, UNDERSTUDY_CONSOLE_PORT: '0', ...env },
    });
    this.process = child;
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor(`${this.name} to serve`, async () => {
      if (child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}: ${this.output}`);
      return this.output.includes('serving on') ? true : undefined;
    });
    await this.watch();
  }

  /**
   * Subscribes to the node's events; they collect in this.events, in id order. A node can report
   * something between starting and our subscription (a restarted primary learns of a newer epoch
   * within milliseconds), so what the store holds past the last event seen is fetched first.
   */
  private async watch(): Promise<void> {
    this.client?.close();
    const client = await ControlClient.connect(this.home);
    this.client = client;
    const pushedMeanwhile: EventRecord[] = [];
    let caughtUp = false;
    client.onEvent((event) => (caughtUp ? this.record(event) : pushedMeanwhile.push(event)));
    const { lastId } = await client.call('events:subscribe', {});
    const stored = await client.call('events:list', { afterId: this.lastEventId });
    for (const event of stored) if (event.id <= lastId) this.record(event);
    for (const event of pushedMeanwhile) this.record(event);
    caughtUp = true;
  }

  private record(event: EventRecord): void {
    if (event.id <= this.lastEventId) return;
    this.events.push(event);
    this.lastEventId = event.id;
  }

  async status(): Promise<StatusReport> {
    const client = await ControlClient.connect(this.home);
    try {
      return await client.call('node:status', {});
    } finally {
      client.close();
    }
  }

  /** Sends one control command to the running node. */
  async call<C extends CommandName>(command: C, params: CommandParams<C>): Promise<CommandResult<C>> {
    const client = await ControlClient.connect(this.home);
    try {
      return await client.call(command, params);
    } finally {
      client.close();
    }
  }

  async peerState(): Promise<string | undefined> {
    return (await this.status()).peers[0]?.state;
  }

  /** Waits for an event seen after `since` (an index into this.events). */
  waitForEvent(type: string, since = 0, timeoutMs = 10_000): Promise<EventRecord> {
    return waitFor(`${this.name} to report ${type}`, () => this.events.slice(since).find((e) => e.type === type), timeoutMs, 5);
  }

  get pid(): number {
    if (!this.process?.pid) throw new Error(`${this.name} is not running`);
    return this.process.pid;
  }

  signal(signal: NodeJS.Signals): void {
    this.process?.kill(signal);
  }

  /** Waits for the serve process to exit and returns its exit code. */
  async waitExit(): Promise<number | null> {
    const code = await this.exited;
    this.process = null;
    this.client?.close();
    this.client = null;
    return code;
  }

  /** SIGTERM and wait: a clean stop. */
  async stop(): Promise<number | null> {
    if (!this.process) return null;
    this.signal('SIGTERM');
    return this.waitExit();
  }

  async kill(): Promise<void> {
    if (!this.process) return;
    this.signal('SIGKILL');
    await this.waitExit();
  }

  async destroy(): Promise<void> {
    if (this.process) {
      this.signal('SIGCONT');
      this.signal('SIGKILL');
      await this.waitExit();
    }
    this.client?.close();
    // UNDERSTUDY_KEEP_TEST_HOMES=1 keeps homes (store, logs, versions) for a post-mortem.
    if (!process.env.UNDERSTUDY_KEEP_TEST_HOMES) rmSync(join(this.home, '..'), { recursive: true, force: true });
    else console.log(`kept ${this.name}'s home: ${this.home}`);
  }
}

/** Pairs backup with primary via the CLI, returning the pair command's result. */
export async function pairNodes(primary: TestNode, backup: TestNode): Promise<CliResult> {
  const issued = await primary.cli('pair-code');
  if (issued.code !== 0) throw new Error(`pair-code failed: ${issued.stderr}`);
  const code = issued.stdout.trim().split('\n').at(-1)!;
  return backup.cli('pair', '--peer', primary.address, '--code', code);
}

/** Waits until the node reports its peer up. */
export async function waitPeerUp(node: TestNode, timeoutMs = 10_000): Promise<void> {
  await waitFor(`${node.name} to see its peer up`, async () => ((await node.peerState()) === 'up' ? true : undefined), timeoutMs);
}

/** Two fresh nodes, serving, paired (primary issues the code) and seeing each other up. */
export async function startPair(
  serveEnv: { primary?: NodeJS.ProcessEnv; backup?: NodeJS.ProcessEnv } = {},
  placement: { primary?: NodePlacement; backup?: NodePlacement } = {},
): Promise<[TestNode, TestNode]> {
  const [primary, backup] = await Promise.all([TestNode.create('alpha', placement.primary), TestNode.create('beta', placement.backup)]);
  await Promise.all([primary.serve([], serveEnv.primary), backup.serve([], serveEnv.backup)]);
  const paired = await pairNodes(primary, backup);
  if (paired.code !== 0) throw new Error(`pairing failed: ${paired.stderr}`);
  await Promise.all([waitPeerUp(primary), waitPeerUp(backup)]);
  return [primary, backup];
}

/** Pairs a witness with the primary (`pair --as witness`). */
export async function pairWitness(primary: TestNode, witness: TestNode): Promise<CliResult> {
  const issued = await primary.cli('pair-code');
  if (issued.code !== 0) throw new Error(`pair-code failed: ${issued.stderr}`);
  const code = issued.stdout.trim().split('\n').at(-1)!;
  return witness.cli('pair', '--peer', primary.address, '--code', code, '--as', 'witness');
}

/** A pair and its witness, serving; resolves once every node sees the two others up. */
export async function startTrio(
  serveEnv: NodeJS.ProcessEnv = {},
  placement: { primary?: NodePlacement; backup?: NodePlacement; witness?: NodePlacement } = {},
): Promise<[TestNode, TestNode, TestNode]> {
  const [primary, backup] = await startPair({ primary: serveEnv, backup: serveEnv }, placement);
  const witness = await TestNode.create('witness', placement.witness);
  await witness.serve([], serveEnv, 'witness');
  const paired = await pairWitness(primary, witness);
  if (paired.code !== 0) throw new Error(`pairing the witness failed: ${paired.stderr}`);
  await waitTrioUp(primary, backup, witness);
  return [primary, backup, witness];
}

/** Every node sees both others up (the backup and the witness learn of each other through the primary). */
export async function waitTrioUp(primary: TestNode, backup: TestNode, witness: TestNode, timeoutMs = 15_000): Promise<void> {
  for (const node of [primary, backup, witness]) {
    await waitFor(
      `${node.name} to see two peers up`,
      async () => {
        const status = await node.status();
        return status.peers.length === 2 && status.peers.every((peer) => peer.state === 'up') ? true : undefined;
      },
      timeoutMs,
    );
  }
}

/** Protects a folder and a database on the primary (copies at the given paths) and waits until both are in sync; returns their ids. */
export async function protectFolderAndDatabase(
  primary: TestNode,
  folder: { source: string; target: string },
  database: { source: string; target: string },
): Promise<{ folder: string; db: string }> {
  const protect = async (kind: 'folder' | 'sqlite', paths: { source: string; target: string }) => {
    const result = await primary.cli('protect', kind, paths.source, '--to', paths.target);
    if (result.code !== 0) throw new Error(`protect ${kind} failed: ${result.stderr}`);
    return result.stdout.trim().split('\n').at(-1)!;
  };
  const ids = { folder: await protect('folder', folder), db: await protect('sqlite', database) };
  await waitFor(
    'both objects in sync',
    async () => {
      const status = await primary.status();
      return status.objects.length === 2 && status.objects.every((o) => o.state === 'in-sync' && o.pending === 0) ? true : undefined;
    },
    30_000,
  );
  return ids;
}

/** Runs a command (nft, ip...) and resolves with its output; rejects on failure. */
export function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, (error, stdout, stderr) => (error ? reject(new Error(`${command} ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout)));
  });
}
