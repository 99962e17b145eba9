import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { LagSample, ObjectStatus } from '../../contract/control.js';
import { DefaultHistoryIntervalMs, HistorySamples, historyIntervalMs, LagHistories, LagHistory, sampleOf } from './lag-history.js';

const sample = (n: number): LagSample => ({ at: new Date(n * 10_000).toISOString(), lagMs: n, captureMs: 0, sendMs: n, applyMs: 0, pending: n, bytesPerSec: 0 });

describe('lag history', () => {
  test('keeps an hour of samples (360), oldest first, dropping the oldest beyond', () => {
    const history = new LagHistory();
    assert.equal(history.capacity, HistorySamples);
    assert.deepEqual(history.samples(), []);
    for (let n = 1; n <= 3; n++) history.add(sample(n));
    assert.deepEqual(history.samples().map((s) => s.lagMs), [1, 2, 3]);
    for (let n = 4; n <= 400; n++) history.add(sample(n));
    const kept = history.samples();
    assert.equal(kept.length, 360);
    assert.equal(kept[0]!.lagMs, 41);
    assert.equal(kept.at(-1)!.lagMs, 400);
  });

  test('a sample takes the stages and throughput of a status, zero where an old primary reported none', () => {
    const status: ObjectStatus = {
      id: 'f-1', kind: 'folder', source: '/a', target: '/b', state: 'catching-up', lagMs: 900, pending: 12, error: null, progress: null, skipped: 0,
      stages: { capture: { lagMs: 20, changes: 1 }, send: { lagMs: 900, changes: 8 }, apply: { lagMs: 300, changes: 3 } },
      throughput: { bytesPerSec: 4096, changesPerSec: 2 },
    };
    const at = new Date(Date.UTC(2027, 0, 1));
    assert.deepEqual(sampleOf(status, at), { at: at.toISOString(), lagMs: 900, captureMs: 20, sendMs: 900, applyMs: 300, pending: 12, bytesPerSec: 4096 });
    const { stages: _stages, throughput: _throughput, ...bare } = status;
    assert.deepEqual(sampleOf(bare, at), { at: at.toISOString(), lagMs: 900, captureMs: 0, sendMs: 0, applyMs: 0, pending: 12, bytesPerSec: 0 });
  });

  test("a node's histories: one per object, sampled on a timer, dropped once the object is gone", async () => {
    const status = (id: string, lagMs: number): ObjectStatus => ({ id, kind: 'folder', source: '/a', target: '/b', state: 'in-sync', lagMs, pending: 0, error: null, progress: null, skipped: 0 });
    let objects = [status('f-1', 5), status('d-2', 7)];
    const histories = new LagHistories(20);
    histories.start(() => objects, () => new Set(objects.map((o) => o.id)));
    try {
      await new Promise((resolve) => setTimeout(resolve, 90));
      assert.ok(histories.samples('f-1').length >= 2);
      assert.ok(histories.samples('d-2').every((s) => s.lagMs === 7));
      objects = [status('f-1', 5)];
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.deepEqual(histories.samples('d-2'), [], 'unprotected: its history goes');
      assert.deepEqual(histories.samples('x-3'), []);
    } finally {
      histories.stop();
    }
  });

  test('UNDERSTUDY_HISTORY_MS changes the interval only in development', () => {
    assert.equal(historyIntervalMs({}), DefaultHistoryIntervalMs);
    assert.equal(historyIntervalMs({ UNDERSTUDY_HISTORY_MS: '200' }), DefaultHistoryIntervalMs);
    assert.equal(historyIntervalMs({ UNDERSTUDY_DEV: '1', UNDERSTUDY_HISTORY_MS: '200' }), 200);
    assert.equal(historyIntervalMs({ UNDERSTUDY_DEV: '1', UNDERSTUDY_HISTORY_MS: 'soon' }), DefaultHistoryIntervalMs);
    assert.equal(historyIntervalMs({ UNDERSTUDY_DEV: '1', UNDERSTUDY_HISTORY_MS: '-5' }), DefaultHistoryIntervalMs);
  });
});
