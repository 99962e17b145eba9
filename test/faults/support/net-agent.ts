/**
 * A probe that runs inside a lab namespace and answers for it: it serves a TCP echo and a UDP
 * sink on one port, and makes TCP connections and sends UDP datagrams on request, so a test in
 * the host's namespace can check what gets through between members.
 *
 * The test side talks to it over stdin/stdout, one JSON object per line: requests
 * `{id, op, ...}`, answers `{id, ok, value | error}`.
 */
import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Lab } from './netns.js';
import { childRpc } from './child-rpc.js';

export const NetAgentScript = fileURLToPath(import.meta.url);

export interface Datagram {
  from: string;
  text: string;
}

export interface PingResult {
  /** From the start of the connection attempt to the echo's last byte. */
  rttMs: number;
}

export interface NetAgent {
  readonly name: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** Connects, sends `text`, waits for its echo, closes. Rejects on refusal, reset or after timeoutMs. */
  tcpPing(host: string, port: number, timeoutMs: number, text?: string): Promise<PingResult>;
  /** Like tcpPing, but resolves false instead of rejecting when nothing came back in time. */
  canReach(host: string, port: number, timeoutMs: number): Promise<boolean>;
  /** Sends one UDP datagram. */
  udpSend(host: string, port: number, text: string): Promise<void>;
  /** Datagrams received since the previous call (the agent forgets them once handed over). */
  takeDatagrams(): Promise<Datagram[]>;
  /** Opens a TCP stream kept under `stream` for streamPing. */
  streamOpen(stream: string, host: string, port: number, timeoutMs: number): Promise<void>;
  /** Writes `text` on an open stream and waits for its echo; rejects after timeoutMs. */
  streamPing(stream: string, text: string, timeoutMs: number): Promise<PingResult>;
  /** Ends the agent. Idempotent. */
  close(): Promise<void>;
}

type Request =
  | { id: number; op: 'tcp-ping'; host: string; port: number; timeoutMs: number; text: string }
  | { id: number; op: 'udp-send'; host: string; port: number; text: string }
  | { id: number; op: 'take-datagrams' }
  | { id: number; op: 'stream-open'; stream: string; host: string; port: number; timeoutMs: number }
  | { id: number; op: 'stream-ping'; stream: string; text: string; timeoutMs: number };

/** Starts an agent inside the lab member's namespace, serving on `port` on all its addresses. */
export async function startNetAgent(lab: Lab, name: string, port: number): Promise<NetAgent> {
  const child = lab.spawn(name, process.execPath, [NetAgentScript, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const rpc = childRpc(child, `net agent '${name}'`);
  // The distributive Omit keeps each op's own fields.
  type Body = Request extends infer R ? (R extends Request ? Omit<R, 'id'> : never) : never;
  const request = <T>(body: Body): Promise<T> => rpc.request<T>(body);
  await rpc.ready;
  return {
    name,
    port,
    process: child,
    tcpPing: (host, port, timeoutMs, text = 'ping') => request<PingResult>({ op: 'tcp-ping', host, port, timeoutMs, text }),
    canReach: (host, port, timeoutMs) =>
      request<PingResult>({ op: 'tcp-ping', host, port, timeoutMs, text: 'ping' }).then(
        () => true,
        () => false,
      ),
    udpSend: (host, port, text) => request<void>({ op: 'udp-send', host, port, text }),
    takeDatagrams: () => request<Datagram[]>({ op: 'take-datagrams' }),
    streamOpen: (stream, host, port, timeoutMs) => request<void>({ op: 'stream-open', stream, host, port, timeoutMs }),
    streamPing: (stream, text, timeoutMs) => request<PingResult>({ op: 'stream-ping', stream, text, timeoutMs }),
    close: () => rpc.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// The agent itself (runs inside the namespace).

/** Reads from a socket until `text` has come back in full, or fails after timeoutMs. */
function awaitEcho(socket: Socket, text: string, timeoutMs: number, started: number): Promise<PingResult> {
  return new Promise((resolve, reject) => {
    let received = '';
    const timer = setTimeout(() => finish(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      received += chunk.toString();
      if (received.length >= text.length) finish();
    };
    const onError = (error: Error): void => finish(error);
    const onClose = (): void => finish(new Error('connection closed before the echo'));
    function finish(error?: Error): void {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve({ rttMs: performance.now() - started });
    }
    socket.on('data', onData);
    socket.once('error', onError);
    socket.once('close', onClose);
  });
}

function openSocket(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port });
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

async function agentMain(): Promise<void> {
  const port = Number(process.argv[2]);
  const datagrams: Datagram[] = [];
  const streams = new Map<string, Socket>();
  const streamErrors = new Map<string, string>();

  const tcp = createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  const udp = createSocket('udp4');
  udp.on('message', (message, remote) => datagrams.push({ from: remote.address, text: message.toString() }));
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(port, '0.0.0.0', () => resolve());
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, '0.0.0.0', () => resolve());
  });
  const sender = createSocket('udp4');

  const handle = async (request: Request): Promise<unknown> => {
    switch (request.op) {
      case 'tcp-ping': {
        const started = performance.now();
        const socket = await openSocket(request.host, request.port, request.timeoutMs);
        try {
          const echo = awaitEcho(socket, request.text, Math.max(1, request.timeoutMs - (performance.now() - started)), started);
          socket.write(request.text);
          return await echo;
        } finally {
          socket.destroy();
        }
      }
      case 'udp-send':
        await new Promise<void>((resolve, reject) => sender.send(request.text, request.port, request.host, (error) => (error ? reject(error) : resolve())));
        return undefined;
      case 'take-datagrams':
        return datagrams.splice(0);
      case 'stream-open': {
        streams.get(request.stream)?.destroy();
        const socket = await openSocket(request.host, request.port, request.timeoutMs);
        // Kept so that a later stream-ping can say why the stream is gone (ECONNRESET...).
        socket.on('error', (error: NodeJS.ErrnoException) => streamErrors.set(request.stream, error.code ?? error.message));
        streamErrors.delete(request.stream);
        streams.set(request.stream, socket);
        return undefined;
      }
      case 'stream-ping': {
        const socket = streams.get(request.stream);
        if (!socket) throw new Error(`no stream '${request.stream}'`);
        if (socket.destroyed) throw new Error(`stream '${request.stream}' is closed (${streamErrors.get(request.stream) ?? 'by its peer'})`);
        const started = performance.now();
        const echo = awaitEcho(socket, request.text, request.timeoutMs, started);
        socket.write(request.text);
        return echo;
      }
    }
  };

  const reply = (message: object): void => void process.stdout.write(`${JSON.stringify(message)}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let request: Request;
    try {
      request = JSON.parse(line) as Request;
    } catch {
      return;
    }
    handle(request).then(
      (value) => reply({ id: request.id, ok: true, value }),
      (error: unknown) => reply({ id: request.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
    );
  });
  lines.once('close', () => process.exit(0));
  reply({ ready: true });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  agentMain().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  });
}
