/**
 * The local control endpoint: newline-delimited JSON requests and replies on a Unix socket
 * (or named pipe) that only the node's OS user can reach, or, when UNDERSTUDY_CONTROL_GROUP
 * names a group (the system service sets `understudy`), members of that group. Speaks the contract in contract/control.ts.
 */
import { chmodSync, chownSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { ControlReply, EventRecord } from '../../contract/control.js';
import { UnderstudyError } from '../errors.js';
import { dispatchRequest, type CommandHandler } from './dispatch.js';
import { controlPath, MaxControlLineBytes } from './endpoint.js';

export type { CommandHandler } from './dispatch.js';

/**
 * The environment variable naming the OS group whose members may control this node
 * (set by the system service unit to `understudy`). Unset: only the node's own user may.
 */
export const ControlGroupVariable = 'UNDERSTUDY_CONTROL_GROUP';

export class ControlServer {
  private server: Server | null = null;
  private readonly subscribers = new Set<Socket>();
  private readonly sockets = new Set<Socket>();
  private readonly path: string;

  constructor(
    private readonly home: string,
    private readonly handle: CommandHandler,
    private readonly log: Logger,
  ) {
    this.path = controlPath(home);
  }

  async start(): Promise<void> {
    // The node holds the home's lock, so a socket file left here is from a crashed run.
    if (process.platform !== 'win32') rmSync(this.path, { force: true });
    const server = createServer((socket) => this.serve(socket));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) =>
        reject(new UnderstudyError('listen-failed', `cannot open the control endpoint ${this.path}: ${error.message}`, { cause: error })),
      );
      server.listen(this.path, () => resolve());
    });
    this.restrictAccess();
  }

  /** Pushes an event to every client that subscribed. */
  broadcast(event: EventRecord): void {
    const line = `${JSON.stringify({ event } satisfies ControlReply)}\n`;
    for (const socket of this.subscribers) socket.write(line);
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
    if (process.platform !== 'win32') rmSync(this.path, { force: true });
  }

  private restrictAccess(): void {
    if (process.platform === 'win32') return;
    chmodSync(this.path, 0o600);
    const group = process.env[ControlGroupVariable];
    if (!group) return;
    const gid = groupId(group);
    if (gid === null) {
      this.log.warn({ group }, 'control group does not exist; the control socket stays owner-only');
      return;
    }
    try {
      chownSync(this.path, process.getuid!(), gid);
      chmodSync(this.path, 0o660);
      // Group members must be able to reach the socket inside the home (but not list it).
      chmodSync(this.home, (statSync(this.home).mode & 0o777) | 0o010);
      this.log.info({ group }, 'control socket open to group members');
    } catch (error) {
      this.log.warn({ group, err: error }, 'cannot give the control group access; the control socket stays owner-only');
    }
  }

  private serve(socket: Socket): void {
    let buffered = '';
    this.sockets.add(socket);
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.subscribers.delete(socket);
    });
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > MaxControlLineBytes) {
        this.log.warn('control request too large; connection closed');
        socket.destroy();
        return;
      }
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.trim()) void this.answer(socket, line);
      }
    });
  }

  private async answer(socket: Socket, line: string): Promise<void> {
    const { reply, subscribed } = await dispatchRequest(this.handle, line, this.log);
    if (subscribed) this.subscribers.add(socket);
    if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
  }
}

/** The id of a group from /etc/group, or null when there is no such group. */
function groupId(name: string): number | null {
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [group, , gid] = line.split(':');
      if (group === name && gid) return Number(gid);
    }
  } catch {
    // No /etc/group: no group access, the owner-only default stands.
  }
  return null;
}
