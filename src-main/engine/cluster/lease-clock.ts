/**
 * The clock leases are measured with. It must keep counting while the machine is suspended
 * or the VM paused: Node's monotonic clock (CLOCK_MONOTONIC) stops then, so a primary could
 * wake believing its lease still runs. On Linux we read CLOCK_BOOTTIME through /proc/uptime
 * (10 ms resolution, counted in the safety margin); elsewhere the monotonic clock is all
 * there is.
 */
import { readFileSync } from 'node:fs';
import type { Clock } from '../clock.js';

export interface LeaseClock {
  /** Milliseconds that never go backwards and include time spent suspended (where the OS allows). */
  nowMs(): number;
}

/** /proc/uptime's resolution: 10 ms. */
export const BootClockResolutionMs = 10;

export function bootClock(): LeaseClock {
  if (process.platform !== 'linux') return { nowMs: () => performance.now() };
  let last = 0;
  return {
    nowMs(): number {
      const uptime = Number(readFileSync('/proc/uptime', 'latin1').split(' ')[0]) * 1000;
      // Never backwards, whatever the rounding.
      last = Math.max(last, uptime);
      return last;
    },
  };
}

/** A lease clock driven by a test's manual clock. */
export function leaseClockFrom(clock: Clock): LeaseClock {
  return { nowMs: () => clock.monotonicMs() };
}

/**
 * This machine's monotonic clock in ms (CLOCK_MONOTONIC, the same in every process here):
 * stamped on the events that say when a node started and stopped acting as primary, so a
 * test can compare the intervals of several nodes run on one machine.
 */
export function machineMonoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}
