/**
 * Failure detection for one peer from its heartbeat answers: `up` while pongs arrive,
 * `suspect` after beats go unanswered, `down` when the silence lasts or the connection
 * closes. Pure logic on an injected clock, so every threshold is unit-testable.
 */
import type { Clock } from '../clock.js';
import type { PeerState } from '../../contract/control.js';

/** How often each node sends a heartbeat. @default 200 ms */
export const DefaultHeartbeatIntervalMs = 200;
/** Unanswered beats (in intervals) before the peer is suspect. @default 2 */
export const DefaultSuspectAfterBeats = 2;
/**
 * Silence (in intervals) before the peer is down. @default 3.5 — with 200 ms beats a dead
 * peer is declared down within 700 ms of its last answer, so within 1 s of dying.
 */
export const DefaultDownAfterBeats = 3.5;
const RttWindow = 1000;

export interface DetectorSettings {
  intervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
}

export function detectorSettings(intervalMs = DefaultHeartbeatIntervalMs): DetectorSettings {
  return {
    intervalMs,
    suspectAfterMs: intervalMs * DefaultSuspectAfterBeats,
    downAfterMs: intervalMs * DefaultDownAfterBeats,
  };
}

export interface Transition {
  state: PeerState;
  reason: string;
}

export class PeerDetector {
  private current: PeerState = 'down';
  private lastHeardMs: number | null = null;
  private readonly sent = new Map<number, number>();
  private readonly rtts: number[] = [];
  private lastRttMs: number | null = null;

  constructor(
    private readonly clock: Clock,
    readonly settings: DetectorSettings,
  ) {}

  get state(): PeerState {
    return this.current;
  }

  /** The last round trip in ms, or null while the peer is not up. */
  get rttMs(): number | null {
    return this.current === 'up' ? this.lastRttMs : null;
  }

  /** Round-trip figures over the recent window, in microseconds; null before any sample. */
  rttStats(): { lastUs: number; p50Us: number; p99Us: number; samples: number } | null {
    if (this.rtts.length === 0 || this.lastRttMs === null) return null;
    const sorted = [...this.rtts].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    const us = (ms: number) => Math.round(ms * 1000);
    return { lastUs: us(this.lastRttMs), p50Us: us(at(0.5)), p99Us: us(at(0.99)), samples: sorted.length };
  }

  /** A heartbeat connection was established: silence is measured from now on. */
  connected(): void {
    this.lastHeardMs = this.clock.monotonicMs();
    this.sent.clear();
  }

  /** The heartbeat connection closed: the peer is down at once (a closed socket is not a missed beat). */
  disconnected(reason: string): Transition | null {
    this.lastHeardMs = null;
    this.sent.clear();
    return this.enter('down', reason);
  }

  pingSent(seq: number): void {
    this.sent.set(seq, this.clock.monotonicMs());
    // Unanswered pings are only kept for as long as they could matter.
    if (this.sent.size > 64) this.sent.delete(this.sent.keys().next().value!);
  }

  /** A pong arrived; a pong for a ping we did not send (or already had answered) is ignored. */
  pongReceived(seq: number): Transition | null {
    const sentAt = this.sent.get(seq);
    if (sentAt === undefined) return null;
    this.sent.delete(seq);
    const now = this.clock.monotonicMs();
    this.lastHeardMs = now;
    this.lastRttMs = now - sentAt;
    this.rtts.push(this.lastRttMs);
    if (this.rtts.length > RttWindow) this.rtts.shift();
    return this.enter('up', 'heartbeat answered');
  }

  /** Call often (every quarter interval): moves to suspect or down when beats go unanswered. */
  tick(): Transition | null {
    if (this.lastHeardMs === null) return null;
    const silentMs = this.clock.monotonicMs() - this.lastHeardMs;
    if (silentMs >= this.settings.downAfterMs) {
      return this.enter('down', `no heartbeat answered for ${Math.round(silentMs)} ms`);
    }
    if (silentMs >= this.settings.suspectAfterMs && this.current === 'up') {
      return this.enter('suspect', `no heartbeat answered for ${Math.round(silentMs)} ms`);
    }
    return null;
  }

  private enter(state: PeerState, reason: string): Transition | null {
    if (state === this.current) return null;
    this.current = state;
    return { state, reason };
  }
}
