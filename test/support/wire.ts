/**
 * Raw connections to a node's ports for hostile-input tests: open a socket (plain TCP, or
 * TLS with any identity and protocol), write bytes, and record who ended the connection.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';

export interface ProbeOptions {
  host: string;
  port: number;
  /** TLS options (certificate, key, ALPN...); plain TCP when absent. */
  tls?: ConnectionOptions;
  /** What to write once connected (after the handshake, for TLS). */
  payload: Buffer;
  /**
   * Close the connection ourselves this long after writing, unless the node has closed it
   * first. When absent, wait for the node to close it.
   */
  closeAfterMs?: number;
  /** Give up (and destroy the socket) after this long. @default 10 000 ms */
  timeoutMs?: number;
}

export interface ProbeResult {
  /** Who ended the connection: the node, this side, or nobody before the time limit. */
  closedBy: 'node' | 'us' | 'timeout';
  /** Whether the TLS handshake completed (false for plain TCP). */
  secure: boolean;
  /** The protocol the node chose (TLS only). */
  alpn: string | false | null;
  /** The socket error seen, if any (a reset, a TLS alert...). */
  error: string | null;
  /** Bytes the node sent back after the handshake. */
  received: number;
  /** Time from the payload being written to the connection closing. */
  msAfterWrite: number | null;
}

/** Opens one connection, writes the payload, and reports how it ended. Never rejects. */
export function probe(options: ProbeOptions): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let closedByUs = false;
    let secure = false;
    let alpn: string | false | null = null;
    let error: string | null = null;
    let received = 0;
    let wroteAt: number | null = null;
    let closeTimer: NodeJS.Timeout | undefined;
    let timedOut = false;

    const socket: Socket | TLSSocket = options.tls
      ? tlsConnect({ ...options.tls, host: options.host, port: options.port })
      : netConnect({ host: options.host, port: options.port });

    const send = () => {
      wroteAt = performance.now();
      socket.write(options.payload);
      if (options.closeAfterMs !== undefined) {
        closeTimer = setTimeout(() => {
          if (socket.destroyed) return;
          closedByUs = true;
          socket.end();
          // end() sends our close_notify and FIN; do not wait for a polite answer.
          setTimeout(() => socket.destroy(), 2000).unref();
        }, options.closeAfterMs);
      }
    };

    const deadline = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, options.timeoutMs ?? 10_000);

    if (options.tls) {
      socket.once('secureConnect', () => {
        secure = true;
        alpn = (socket as TLSSocket).alpnProtocol;
        send();
      });
    } else {
      socket.once('connect', send);
    }
    socket.on('data', (chunk: Buffer) => (received += chunk.length));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
    socket.once('close', () => {
      clearTimeout(deadline);
      clearTimeout(closeTimer);
      resolve({
        closedBy: timedOut ? 'timeout' : closedByUs ? 'us' : 'node',
        secure,
        alpn,
        error,
        received,
        msAfterWrite: wroteAt === null ? null : performance.now() - wroteAt,
      });
    });
  });
}

/** Runs fn over items with at most `concurrency` running at once; results in item order. */
export async function inPool<T, R>(items: readonly T[], concurrency: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]!, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return results;
}
