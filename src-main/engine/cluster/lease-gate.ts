/**
 * The main thread's view of the lease the heartbeat worker keeps: a few numbers in shared
 * memory, read synchronously before every externally visible action (a hook, a change
 * shipped, a link opened). After a pause (SIGSTOP, a suspended machine) I/O callbacks can run
 * before any timer does, so a message from the worker could arrive too late; this cannot.
 */
import { bootClock, type LeaseClock } from './lease-clock.js';
import { LeaseSlots } from './lease-keeper.js';

export class LeaseGate {
  readonly buffer = new SharedArrayBuffer(Float64Array.BYTES_PER_ELEMENT * 2);
  private readonly slots = new Float64Array(this.buffer);

  constructor(private readonly clock: LeaseClock = bootClock()) {
    this.slots[LeaseSlots.actUntil] = Number.NEGATIVE_INFINITY;
  }

  /** Whether leases are enforced (the pair has a witness). */
  get enforced(): boolean {
    return this.slots[LeaseSlots.enforced] === 1;
  }

  /** Whether this node, if primary, may act as one right now. */
  mayAct(): boolean {
    const until = this.slots[LeaseSlots.actUntil]!;
    if (until === Number.POSITIVE_INFINITY) return true;
    return this.clock.nowMs() < until;
  }

  /** Time left before this node must stop acting as primary (null when not enforced or not acting). */
  remainingMs(): number | null {
    const until = this.slots[LeaseSlots.actUntil]!;
    if (until === Number.POSITIVE_INFINITY || until === Number.NEGATIVE_INFINITY) return null;
    return Math.max(0, Math.round(until - this.clock.nowMs()));
  }
}
