/** What a protected object needs from the node to talk to its peer and to report. */
import type { Logger } from 'pino';
import type { LinkMessage } from '../../link/messages.js';

export type ReplicationMessage = Exclude<LinkMessage, { t: 'hello' }>;

export interface PeerChannel {
  /** Sends to the peer; false when the data link is down (the message is dropped). */
  send(message: ReplicationMessage, body?: Buffer): boolean;
  /** Resolves when the link can take more data. */
  drained(): Promise<void>;
  /** Whether the link's send buffer is full (then wait for drained()). */
  backedUp(): boolean;
  connected(): boolean;
  /** This node's current epoch, stamped on every message. */
  epoch(): number;
}

export interface ObjectReporter {
  log: Logger;
  /** Records an event (a stable dotted type, a sentence, fields). */
  event(type: string, message: string, data: Record<string, unknown>): void;
}

export type { ObjectState, ObjectStatus } from '../../../contract/control.js';
