import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stage, ThroughputMeter, totals } from './stages.js';

const T0 = Date.UTC(2027, 0, 1, 12);

describe('pipeline stages', () => {
  test('a stage is the age of its oldest change and how many wait; an empty one is zero whatever its timestamp', () => {
    assert.deepEqual(stage(3, T0 - 1500, T0), { lagMs: 1500, changes: 3 });
    assert.deepEqual(stage(0, T0 - 1500, T0), { lagMs: 0, changes: 0 });
    assert.deepEqual(stage(2, null, T0), { lagMs: 0, changes: 2 }, 'changes with no known age');
    assert.deepEqual(stage(1, T0 + 50, T0), { lagMs: 0, changes: 1 }, 'a clock step never gives a negative lag');
  });

  test("an object's lag is its oldest change in any stage; pending counts every stage", () => {
    const stages = { capture: stage(1, T0 - 20, T0), send: stage(40, T0 - 5000, T0), apply: stage(7, T0 - 300, T0) };
    assert.deepEqual(totals(stages), { lagMs: 5000, pending: 48 });
  });
});

describe('throughput over the last 10 s', () => {
  test('what was acknowledged in the window, per second', () => {
    const meter = new ThroughputMeter();
    meter.record(10_000, 4, T0);
    meter.record(30_000, 6, T0 + 4_000);
    assert.deepEqual(meter.rate(T0 + 5_000), { bytesPerSec: 4_000, changesPerSec: 1 });
  });

  test('older acknowledgements leave the window, and a quiet meter reads zero', () => {
    const meter = new ThroughputMeter();
    meter.record(50_000, 5, T0);
    meter.record(20_000, 2, T0 + 9_000);
    assert.deepEqual(meter.rate(T0 + 10_500), { bytesPerSec: 2_000, changesPerSec: 0.2 }, 'the first second has left the window');
    assert.deepEqual(meter.rate(T0 + 60_000), { bytesPerSec: 0, changesPerSec: 0 });
    assert.deepEqual(new ThroughputMeter().rate(T0), { bytesPerSec: 0, changesPerSec: 0 });
  });

  test('a bucket reused a window later starts from zero', () => {
    const meter = new ThroughputMeter();
    meter.record(1_000_000, 100, T0);
    meter.record(10, 1, T0 + 10_000); // the same slot of the ring, ten seconds on
    assert.deepEqual(meter.rate(T0 + 10_000), { bytesPerSec: 1, changesPerSec: 0.1 });
  });
});
