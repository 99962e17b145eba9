/**
 * A client of a node's control endpoint, implementing the contract's ControlApi: what the
 * CLI uses, and what tests use to watch a node's events as they happen.
 */
import { connect, type Socket } from 'node:net';
import type { CommandName, CommandParams, CommandResult, ControlApi, ControlReply, EventRecord } from '../../contract/control.js';
import { UnderstudyError, type ErrorCode } from '../errors.js';
import { controlPath } from './endpoint.js';

/** The error a command returned, rebuilt with its code and hint. */
export class ControlCommandError extends UnderstudyError {}

export class ControlClient implements ControlApi {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private readonly listeners = new Set<(event: EventRecord) => void>();
  private closedError: Error | null = null;

  private constructor(private readonly socket: Socket) {
    let buffered = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let newline: number;
      while ((newline = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line) this.receive(JSON.parse(line) as ControlReply);
      }
    });
    const fail = (error: Error) => {
      this.closedError = error;
      for (const p of this.pending.values()) p.reject(error);
      this.pending.clear();
    };
    socket.on('error', (error) => fail(error));
    socket.on('close', () => fail(new UnderstudyError('not-running', 'the node closed the control connection')));
  }

  /** Connects to the node in `home`; fails with not-running when nothing listens there. */
  static connect(home: string): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(controlPath(home));
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(new ControlClient(socket));
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'ENOENT' || error.code === 'ECONNREFUSED') {
          reject(
            new UnderstudyError('not-running', `the node in ${home} is not running`, {
              hint: `start it with 'understudy serve --home ${home}'`,
            }),
          );
        } else if (error.code === 'EACCES') {
          reject(
            new UnderstudyError('control-failed', `not allowed to control the node in ${home}`, {
              hint: "run as the node's user, or as a member of the 'understudy' group",
            }),
          );
        } else {
          reject(new UnderstudyError('control-failed', `cannot reach the node in ${home}: ${error.message}`, { cause: error }));
        }
      });
    });
  }

  call<C extends CommandName>(command: C, params: CommandParams<C>): Promise<CommandResult<C>> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.socket.write(`${JSON.stringify({ id, command, params })}\n`);
    });
  }

  onEvent(listener: (event: EventRecord) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }

  private receive(reply: ControlReply): void {
    if ('event' in reply) {
      for (const listener of this.listeners) listener(reply.event);
      return;
    }
    const waiter = this.pending.get(reply.id);
    if (!waiter) return;
    this.pending.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.result);
    else waiter.reject(new ControlCommandError(reply.error.code as ErrorCode, reply.error.message, reply.error.hint ? { hint: reply.error.hint } : {}));
  }
}
