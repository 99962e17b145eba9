/**
 * A userspace TCP proxy that delays what it forwards, stalls it, or resets it: the stand-in
 * for `tc netem`, which this kernel lacks. Put it between two nodes by giving one node the
 * proxy's address as its peer's address.
 *
 * Delay is one-way and per direction: a chunk read at time t is written on at t + delay, in
 * order (a later chunk never overtakes an earlier one, even when the delay is lowered). With
 * the same delay D both ways, a request/answer round trip grows by at least 2 D.
 *
 * Modes (switchable at any time):
 * - 'forward': bytes flow, delayed.
 * - 'blackhole': nothing flows either way and new connections are accepted but not connected
 *   on, as in a partition: the bytes are held, not lost (TCP never loses bytes, it retransmits),
 *   and flow again, in order, when the mode goes back to 'forward'. Reading stops while held,
 *   so senders see backpressure as they would on a dead link.
 * - 'reset': every open connection is reset (RST) on both sides, and new ones are reset at
 *   once: a peer that crashed and rebooted.
 *
 * Runs in this process (startDelayProxy) or as a child process, for example inside a network
 * namespace through a lab's prefix (spawnDelayProxy), controlled over its stdin.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { childRpc } from './child-rpc.js';

export type ProxyMode = 'forward' | 'blackhole' | 'reset';

export interface DirectionalDelay {
  /** Delay of bytes from the client toward the target, in ms. */
  toTarget: number;
  /** Delay of bytes from the target back to the client, in ms. */
  toClient: number;
}

export interface DelayProxyOptions {
  /** Where the proxy listens. @default '127.0.0.1' */
  listenHost?: string;
  /** @default 0 (an ephemeral port; read it from the proxy's `port`) */
  listenPort?: number;
  targetHost: string;
  targetPort: number;
  /** One number delays both directions by that much. @default 0 */
  delayMs?: number | DirectionalDelay;
  /** @default 'forward' */
  mode?: ProxyMode;
}

export interface DelayProxy {
  readonly host: string;
  readonly port: number;
  /** `host:port`, ready for a `--peer` or `--listen`-style option. */
  readonly address: string;
  /** Applies to bytes read from now on; bytes already queued keep their time. */
  setDelay(delay: number | DirectionalDelay): Promise<void>;
  setMode(mode: ProxyMode): Promise<void>;
  /** Connections currently open through the proxy. */
  connections(): Promise<number>;
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>;
}

/** Above this many queued bytes in one direction, the proxy stops reading that direction. */
const HighWaterBytes = 1 << 20;

function normalise(delay: number | DirectionalDelay): DirectionalDelay {
  const value = typeof delay === 'number' ? { toTarget: delay, toClient: delay } : delay;
  for (const ms of [value.toTarget, value.toClient]) if (!Number.isFinite(ms) || ms < 0) throw new Error(`delay must be a finite number >= 0, got ${ms}`);
  return { ...value };
}

type Item = { due: number; chunk: Buffer } | { due: number; end: true };

/** One direction of one connection: a queue of chunks, each released at its due time. */
class Pipe {
  private readonly queue: Item[] = [];
  private queuedBytes = 0;
  private lastDue = 0;
  private timer: NodeJS.Timeout | null = null;
  private held = false;

  constructor(
    private readonly source: Socket,
    private readonly sink: Socket,
    private readonly delay: () => number,
  ) {
    source.on('data', (chunk: Buffer) => this.push({ due: this.dueTime(), chunk }));
    source.on('end', () => this.push({ due: this.dueTime(), end: true }));
  }

  private dueTime(): number {
    // Never before the previous chunk: lowering the delay must not reorder the stream.
    this.lastDue = Math.max(performance.now() + this.delay(), this.lastDue);
    return this.lastDue;
  }

  private push(item: Item): void {
    this.queue.push(item);
    if ('chunk' in item) this.queuedBytes += item.chunk.length;
    if (this.queuedBytes > HighWaterBytes) this.source.pause();
    this.schedule();
  }

  hold(held: boolean): void {
    this.held = held;
    if (held) {
      this.source.pause();
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
    } else {
      // Held bytes missed their time: they go now, in order, then the rest as due.
      if (this.queuedBytes <= HighWaterBytes) this.source.resume();
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.held || this.timer || this.queue.length === 0) return;
    const wait = Math.max(0, this.queue[0]!.due - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, wait);
  }

  private flush(): void {
    const now = performance.now();
    while (!this.held && this.queue.length > 0 && this.queue[0]!.due <= now + 0.5) {
      const item = this.queue.shift()!;
      if ('end' in item) {
        if (!this.sink.destroyed) this.sink.end();
        continue;
      }
      this.queuedBytes -= item.chunk.length;
      if (!this.sink.destroyed) this.sink.write(item.chunk);
    }
    if (!this.held && this.queuedBytes <= HighWaterBytes && this.source.isPaused()) this.source.resume();
    this.schedule();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.queue.length = 0;
  }
}

interface Connection {
  client: Socket;
  target?: Socket;
  pipes: Pipe[];
}

class LocalDelayProxy implements DelayProxy {
  private delay: DirectionalDelay;
  private mode: ProxyMode;
  private readonly open = new Set<Connection>();
  private closed = false;
  port = 0;

  constructor(
    private readonly server: Server,
    private readonly options: DelayProxyOptions,
    readonly host: string,
  ) {
    this.delay = normalise(options.delayMs ?? 0);
    this.mode = options.mode ?? 'forward';
    server.on('connection', (client) => this.accept(client));
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  private accept(client: Socket): void {
    if (this.mode === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const connection: Connection = { client, pipes: [] };
    this.open.add(connection);
    client.setNoDelay(true);
    client.on('error', () => this.reset(connection));
    client.on('close', () => this.sideClosed(connection));
    if (this.mode === 'forward') this.connectTarget(connection);
  }

  private connectTarget(connection: Connection): void {
    const target = connect({ host: this.options.targetHost, port: this.options.targetPort, allowHalfOpen: true });
    connection.target = target;
    target.setNoDelay(true);
    // An error from the target (refused, reset) resets the client's connection too.
    target.on('error', () => this.reset(connection));
    target.on('close', () => this.sideClosed(connection));
    target.once('connect', () => {
      connection.pipes = [
        new Pipe(connection.client, target, () => this.delay.toTarget),
        new Pipe(target, connection.client, () => this.delay.toClient),
      ];
      const held = this.mode !== 'forward';
      for (const pipe of connection.pipes) pipe.hold(held);
    });
  }

  /**
   * One side closed. Half-closes travel through the pipes (an 'end' is queued like data and
   * delivered after the delay), so a side closes cleanly only once both directions are done;
   * the connection is forgotten when both sides are closed.
   */
  private sideClosed(connection: Connection): void {
    const { client, target } = connection;
    if (!client.destroyed || (target !== undefined && !target.destroyed)) return;
    this.open.delete(connection);
    for (const pipe of connection.pipes) pipe.stop();
  }

  /** Resets (RST) both sides of a connection at once. */
  private reset(connection: Connection): void {
    if (!this.open.has(connection)) return;
    this.open.delete(connection);
    for (const pipe of connection.pipes) pipe.stop();
    for (const socket of [connection.client, connection.target]) if (socket && !socket.destroyed) socket.resetAndDestroy();
  }

  async setDelay(delay: number | DirectionalDelay): Promise<void> {
    this.delay = normalise(delay);
  }

  async setMode(mode: ProxyMode): Promise<void> {
    if (!['forward', 'blackhole', 'reset'].includes(mode)) throw new Error(`unknown proxy mode '${String(mode)}'`);
    this.mode = mode;
    for (const connection of [...this.open]) {
      if (mode === 'reset') this.reset(connection);
      else if (!connection.target) {
        if (mode === 'forward') this.connectTarget(connection);
      } else for (const pipe of connection.pipes) pipe.hold(mode === 'blackhole');
    }
  }

  async connections(): Promise<number> {
    return this.open.size;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const connection of [...this.open]) {
      this.open.delete(connection);
      for (const pipe of connection.pipes) pipe.stop();
      connection.client.destroy();
      connection.target?.destroy();
    }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Starts a delay proxy in this process; resolves once it listens. */
export async function startDelayProxy(options: DelayProxyOptions): Promise<DelayProxy> {
  const host = options.listenHost ?? '127.0.0.1';
  // pauseOnConnect: nothing is read before the target is connected (or while a new connection is
  // held in blackhole mode); allowHalfOpen: a half-close is forwarded, delayed, like data.
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true });
  const proxy = new LocalDelayProxy(server, options, host);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  proxy.port = typeof address === 'object' && address ? address.port : 0;
  return proxy;
}

// ---------------------------------------------------------------------------------------------
// As a child process: one JSON command per stdin line, one JSON answer per stdout line.

export const DelayProxyScript = fileURLToPath(import.meta.url);

interface Request {
  id: number;
  op: 'delay' | 'mode' | 'connections' | 'close';
  delay?: number | DirectionalDelay;
  mode?: ProxyMode;
}

export interface SpawnedDelayProxy extends DelayProxy {
  readonly process: ChildProcess;
}

/**
 * Starts a delay proxy as a child process, behind `prefix` when given (for example a lab's
 * `prefix('a')`, so it listens on a lab address inside that namespace). Resolves once it
 * listens. The same interface as startDelayProxy; close() ends the child.
 */
export async function spawnDelayProxy(options: DelayProxyOptions & { prefix?: string[] }): Promise<SpawnedDelayProxy> {
  const { prefix = [], ...proxyOptions } = options;
  const argv = [...prefix, process.execPath, DelayProxyScript, JSON.stringify(proxyOptions)];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const rpc = childRpc(child, 'delay proxy');
  const request = (op: Request['op'], extra: Partial<Request> = {}): Promise<unknown> => rpc.request({ op, ...extra });
  const { host, port } = (await rpc.ready).listening as { host: string; port: number };
  return {
    process: child,
    host,
    port,
    address: `${host}:${port}`,
    async setDelay(delay) {
      await request('delay', { delay: normalise(delay) });
    },
    async setMode(mode) {
      await request('mode', { mode });
    },
    async connections() {
      return (await request('connections')) as number;
    },
    close: () => rpc.close(),
  };
}

async function childMain(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as DelayProxyOptions;
  const proxy = await startDelayProxy(options);
  const reply = (message: object): void => void process.stdout.write(`${JSON.stringify(message)}\n`);
  reply({ listening: { host: proxy.host, port: proxy.port } });
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let request: Request;
    try {
      request = JSON.parse(line) as Request;
    } catch {
      return;
    }
    const handle = async (): Promise<unknown> => {
      switch (request.op) {
        case 'delay':
          return proxy.setDelay(request.delay ?? 0);
        case 'mode':
          return proxy.setMode(request.mode ?? 'forward');
        case 'connections':
          return proxy.connections();
        case 'close':
          return proxy.close();
        default:
          throw new Error(`unknown op '${String(request.op)}'`);
      }
    };
    handle().then(
      (value) => reply({ id: request.id, ok: true, value }),
      (error: unknown) => reply({ id: request.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
    );
  });
  // The parent closing our stdin (or dying) is the signal to stop.
  lines.once('close', () => void proxy.close().then(() => process.exit(0)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  childMain().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
}
