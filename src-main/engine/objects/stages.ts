/**
 * Where an object's lag sits: the stages of its replication pipeline (capture, send, apply),
 * each as the age of its oldest change and how many changes wait in it, and the throughput
 * the backup acknowledged over the last 10 s. Pure bookkeeping: the sources say what is in
 * each stage (see ObjectStages in the contract for what each stage means).
 */
import type { ObjectStages, StageLag, Throughput } from '../../contract/control.js';

/** Throughput is averaged over this window. @default 10 s */
export const ThroughputWindowMs = 10_000;
const BucketMs = 1000;
const Buckets = ThroughputWindowMs / BucketMs;

/** A stage holding `changes` changes, the oldest seen at `oldestAt` (wall ms; null when empty). */
export function stage(changes: number, oldestAt: number | null, nowMs: number): StageLag {
  if (changes <= 0) return { lagMs: 0, changes: 0 };
  return { lagMs: oldestAt === null ? 0 : Math.max(0, Math.round(nowMs - oldestAt)), changes };
}

export const EmptyStage: StageLag = { lagMs: 0, changes: 0 };

/** The object's lag (its oldest change anywhere in the pipeline) and its pending changes (all stages). */
export function totals(stages: ObjectStages): { lagMs: number; pending: number } {
  return {
    lagMs: Math.max(stages.capture.lagMs, stages.send.lagMs, stages.apply.lagMs),
    pending: stages.capture.changes + stages.send.changes + stages.apply.changes,
  };
}

/**
 * Bytes and changes acknowledged by the backup, in one-second buckets over the last
 * ThroughputWindowMs: constant memory whatever the rate.
 */
export class ThroughputMeter {
  private readonly buckets = Array.from({ length: Buckets }, () => ({ second: -1, bytes: 0, changes: 0 }));

  /** The backup acknowledged `changes` changes carrying `bytes` bytes at nowMs. */
  record(bytes: number, changes: number, nowMs: number): void {
    if (bytes <= 0 && changes <= 0) return;
    const second = Math.floor(nowMs / BucketMs);
    const bucket = this.buckets[second % Buckets]!;
    if (bucket.second !== second) Object.assign(bucket, { second, bytes: 0, changes: 0 });
    bucket.bytes += bytes;
    bucket.changes += changes;
  }

  /** Per second, averaged over the window ending now (the current second counts in it). */
  rate(nowMs: number): Throughput {
    const second = Math.floor(nowMs / BucketMs);
    let bytes = 0;
    let changes = 0;
    for (const bucket of this.buckets) {
      if (bucket.second > second - Buckets && bucket.second <= second) {
        bytes += bucket.bytes;
        changes += bucket.changes;
      }
    }
    const seconds = ThroughputWindowMs / 1000;
    return { bytesPerSec: Math.round(bytes / seconds), changesPerSec: Math.round((changes / seconds) * 10) / 10 };
  }
}
