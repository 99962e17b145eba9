/**
 * Time, injectable so that expiry and timeouts are testable without waiting.
 * Durations come from a monotonic source; wall time is only for display and records.
 */
export interface Clock {
  /** Monotonic milliseconds (fractional); never goes backwards, unrelated to wall time. */
  monotonicMs(): number;
  /** Wall-clock time, for timestamps that people read. */
  now(): Date;
}

export const systemClock: Clock = {
  monotonicMs: () => performance.now(),
  now: () => new Date(),
};

/** A clock that moves only when told to; for unit tests. */
export class ManualClock implements Clock {
  private mono = 0;
  private wall: number;

  constructor(startWall = Date.UTC(2026, 0, 1)) {
    this.wall = startWall;
  }

  monotonicMs(): number {
    return this.mono;
  }

  now(): Date {
    return new Date(this.wall);
  }

  advance(ms: number): void {
    this.mono += ms;
    this.wall += ms;
  }
}

/** ISO 8601 UTC, the one format for times in output and records. */
export function isoTime(date: Date): string {
  return date.toISOString();
}
