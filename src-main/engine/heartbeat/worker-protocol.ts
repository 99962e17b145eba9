/** Messages between the node (main thread) and its heartbeat worker thread. */
import type { PeerState, RttStats } from '../../contract/control.js';

export interface BeatPeer {
  id: string;
  /** Hex SHA-256 of the peer's pinned public key. */
  keyHash: string;
  host: string;
  /** The peer's heartbeat port. */
  port: number;
  /** Whether this node dials the peer (the node with the lower id dials; the other accepts). */
  dial: boolean;
}

export interface BeatWorkerData {
  nodeId: string;
  certPem: string;
  keyPem: string;
  listenHost: string;
  listenPort: number;
  intervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
}

export type ToWorker =
  | { type: 'peers'; peers: BeatPeer[] }
  | { type: 'epoch'; epoch: number }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'listening' }
  | { type: 'listen-error'; code: string; message: string }
  | {
      type: 'peer';
      id: string;
      state: PeerState;
      reason: string;
      rttMs: number | null;
      rtt: RttStats | null;
      /** Wall time (ms since epoch) of the last answered beat, or null. */
      lastSeenAt: number | null;
      changed: boolean;
    }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; msg: string; fields: Record<string, unknown> }
  | { type: 'stopped' };
