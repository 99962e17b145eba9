/**
 * One message channel over a socket: frames in, validated messages out.
 * Any bad frame or message closes this connection (with the reason reported once)
 * and never throws into the caller, so a hostile peer can cost us a socket, not the node.
 */
import type { Socket } from 'node:net';
import type * as v from 'valibot';
import { encodeFrame, FrameError, FrameReader } from './frame.js';
import { parseMessage } from './messages.js';

export interface FramedSocketOptions<T> {
  schema: v.GenericSchema<unknown, T>;
  maxFrameBytes: number;
  /** Message types that may carry a binary body. @default none */
  bodyTypes?: ReadonlySet<string>;
  /** Called with each valid message and its body (empty for most). */
  onMessage: (message: T, body: Buffer) => void;
  /** Called exactly once when the connection ends; reason is null for a clean close. */
  onClose: (reason: string | null) => void;
}

export class FramedSocket<T> {
  private readonly reader: FrameReader;
  private closedReason: string | null | undefined = undefined;
  /** Frame bytes sent and received on this connection (before TLS). */
  sentBytes = 0;
  receivedBytes = 0;

  constructor(
    readonly socket: Socket,
    private readonly options: FramedSocketOptions<T>,
  ) {
    this.reader = new FrameReader(options.maxFrameBytes);
    // Messages are small and latency matters (a heartbeat held back by Nagle's algorithm
    // waits for the peer's delayed ACK: 40 ms on Linux).
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error: Error) => this.finish(`socket error: ${error.message}`));
    socket.on('close', () => {
      const pending = this.reader.pendingBytes;
      this.finish(pending > 0 ? `connection closed mid-frame (${pending} bytes of a truncated frame)` : null);
    });
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Queues a message; returns false when the socket's buffer is full (wait for 'drain'). */
  send(message: unknown, body?: Buffer): boolean {
    if (this.closed || this.socket.destroyed) return false;
    const frame = encodeFrame(message, body);
    this.sentBytes += frame.length;
    return this.socket.write(frame);
  }

  /** Closes the connection and reports reason (once). */
  close(reason: string | null): void {
    this.finish(reason);
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return;
    this.receivedBytes += chunk.length;
    let frames;
    try {
      frames = this.reader.push(chunk);
    } catch (error) {
      const reason = error instanceof FrameError ? `bad frame (${error.reason}): ${error.message}` : String(error);
      this.close(reason);
      return;
    }
    for (const frame of frames) {
      if (this.closed) return;
      const parsed = parseMessage(this.options.schema, frame.header, frame.body, this.options.bodyTypes);
      if (!parsed.ok) {
        this.close(`bad message: ${parsed.reason}`);
        return;
      }
      try {
        this.options.onMessage(parsed.message, frame.body);
      } catch (error) {
        // A handler bug must cost this connection, never the whole node.
        this.close(`internal error while handling ${describe(parsed.message)}: ${String(error)}`);
        return;
      }
    }
  }

  private finish(reason: string | null): void {
    if (this.closed) return;
    this.closedReason = reason;
    this.options.onClose(reason);
  }
}

function describe(message: unknown): string {
  const t = (message as { t?: unknown }).t;
  return typeof t === 'string' ? `'${t}'` : 'a message';
}
