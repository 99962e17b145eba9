/**
 * License time. Terms and the trial are counted in wall time, which an admin can set back; so
 * license time never goes below the latest wall time this node has seen (a high-water mark
 * kept in the store). In development, UNDERSTUDY_NOW=ISO-TIME starts the wall clock at that
 * instant, for tests that need a license to be old.
 */
import { isDevMode } from './vendor-keys.js';

/** The high-water mark is written when the wall clock passed it by this much (not on every read). */
const SaveEveryMs = 60_000;

export interface LicenseTime {
  /** max(wall clock, high-water mark). */
  nowMs: number;
  /** How far the wall clock is behind the high-water mark. */
  behindMs: number;
}

export type WallClock = () => number;

export function licenseWallClock(env: NodeJS.ProcessEnv = process.env): WallClock {
  const start = env.UNDERSTUDY_NOW ? Date.parse(env.UNDERSTUDY_NOW) : Number.NaN;
  if (!isDevMode(env) || Number.isNaN(start)) return () => Date.now();
  const base = Date.now();
  return () => start + (Date.now() - base);
}

export class HighWaterClock {
  constructor(
    private readonly wall: WallClock,
    private readonly load: () => number | undefined,
    /** Null where the store is open read-only. */
    private readonly save: ((ms: number) => void) | null,
  ) {}

  now(): LicenseTime {
    const wall = this.wall();
    const mark = this.load() ?? 0;
    if (this.save && wall > mark + (mark === 0 ? 0 : SaveEveryMs)) this.save(wall);
    return { nowMs: Math.max(wall, mark), behindMs: Math.max(0, mark - wall) };
  }
}
