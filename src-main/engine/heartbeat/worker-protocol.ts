/** Messages between the node (main thread) and its heartbeat worker thread. */
import type { PeerState, RttStats } from '../../contract/control.js';
import type { ClusterView, KeeperReport } from '../cluster/lease-keeper.js';

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
  /** The node's home: the witness keeps its ballot there. */
  home: string;
  /** Shared with the main thread: until when this node may act as primary (LeaseSlots). */
  leaseBuffer: SharedArrayBuffer;
  leaseMs: number;
}

export type ToWorker =
  | { type: 'peers'; peers: BeatPeer[] }
  | { type: 'cluster'; view: ClusterView }
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
  /** `mono`: machineMonoMs() when the worker decided, before the main thread hears of it. */
  | { type: 'keeper'; report: KeeperReport; mono: number }
  | { type: 'stopped' };
