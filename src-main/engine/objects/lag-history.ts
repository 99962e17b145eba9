/**
 * Each object's lag over the last hour, in memory: one sample per interval in a ring of 360,
 * so a node keeps a fixed amount per object however long it runs (`understudy history`, the
 * dashboard's lag chart). Lost at a restart, like any in-memory figure.
 */
import type { LagSample, ObjectStatus } from '../../contract/control.js';

/** One sample every 10 s. @default 10 000 ms */
export const DefaultHistoryIntervalMs = 10_000;
/** An hour of samples at the default interval. */
export const HistorySamples = 360;

/** The sampling interval: UNDERSTUDY_HISTORY_MS overrides it only in development (UNDERSTUDY_DEV=1), for tests. */
export function historyIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  const override = Number(env.UNDERSTUDY_HISTORY_MS);
  if (env.UNDERSTUDY_DEV === '1' && Number.isInteger(override) && override > 0) return override;
  return DefaultHistoryIntervalMs;
}

/** One sample of an object's status as it is at `at`. */
export function sampleOf(status: ObjectStatus, at: Date): LagSample {
  return {
    at: at.toISOString(),
    lagMs: status.lagMs,
    captureMs: status.stages?.capture.lagMs ?? 0,
    sendMs: status.stages?.send.lagMs ?? 0,
    applyMs: status.stages?.apply.lagMs ?? 0,
    pending: status.pending,
    bytesPerSec: status.throughput?.bytesPerSec ?? 0,
  };
}

/** A ring buffer of samples: the newest `capacity` are kept. */
export class LagHistory {
  private readonly ring: (LagSample | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity = HistorySamples) {
    this.ring = new Array<LagSample | undefined>(capacity);
  }

  add(sample: LagSample): void {
    this.ring[this.next] = sample;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /** Oldest first. */
  samples(): LagSample[] {
    const start = (this.next - this.count + this.capacity) % this.capacity;
    return Array.from({ length: this.count }, (_, i) => this.ring[(start + i) % this.capacity]!);
  }
}

/** Every object's history on this node, sampled from their statuses every intervalMs. */
export class LagHistories {
  private readonly histories = new Map<string, LagHistory>();
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly intervalMs = historyIntervalMs()) {}

  /**
   * Starts sampling `statuses`; `known` says which objects still exist (by the store, not by
   * what is open: a reverse closes and reopens every object, and its history stays).
   */
  start(statuses: () => ObjectStatus[], known: () => Set<string>): void {
    this.timer = setInterval(() => {
      const at = new Date();
      for (const status of statuses()) {
        let history = this.histories.get(status.id);
        if (!history) this.histories.set(status.id, (history = new LagHistory()));
        history.add(sampleOf(status, at));
      }
      const ids = known();
      for (const id of this.histories.keys()) if (!ids.has(id)) this.histories.delete(id);
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Oldest first; empty for an object not sampled yet. */
  samples(id: string): LagSample[] {
    return this.histories.get(id)?.samples() ?? [];
  }
}
