import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EventRecord, ObjectStatus, StatusReport } from '../contract/control.js';
import { FlapLimit, FlapWindowMs, LagForMs, NotificationPolicy } from './notification-policy.js';

let id = 1;
const event = (type: string, fields: Record<string, unknown> = {}): EventRecord => ({ id: id++, at: '', type: type as EventRecord['type'], message: `${type} happened`, ...fields });
const withLag = (lagMs: number): StatusReport => ({ objects: [{ id: 'f-1', source: '/srv/shared', lagMs, pending: 12 } as ObjectStatus] }) as StatusReport;

describe('notification policy', () => {
  test('what matters is notified; routine events are not', () => {
    const policy = new NotificationPolicy(() => 0);
    assert.equal(policy.onEvent(event('peer.down', { peer: 'B', peerName: 'beta' }))?.title, "Lost contact with 'beta'");
    assert.equal(policy.onEvent(event('failover.done'))?.urgency, 'critical');
    assert.equal(policy.onEvent(event('switchover.done'))?.urgency, 'normal');
    assert.equal(policy.onEvent(event('folder.error', { object: 'f-1' }))?.title, 'Protection error');
    for (const routine of ['peer.up', 'folder.in-sync', 'hook.ran', 'audit.done', 'pair.code-issued']) assert.equal(policy.onEvent(event(routine)), null, routine);
  });

  test('a flapping link: the first few are shown, the rest held, then one summary', () => {
    let now = 0;
    const policy = new NotificationPolicy(() => now);
    const shown: unknown[] = [];
    for (let i = 0; i < 20; i++) {
      now += 5_000;
      const n = policy.onEvent(event('peer.down', { peer: 'B', peerName: 'beta' }));
      if (n) shown.push(n);
    }
    assert.equal(shown.length, FlapLimit);
    assert.deepEqual(policy.onStatus(withLag(0)), [], 'no summary while the window runs');
    now += FlapWindowMs;
    const [summary, ...rest] = policy.onStatus(withLag(0));
    assert.equal(rest.length, 0);
    assert.match(summary!.body, /^17 more like this were held back/);
    // Another peer is another subject: not held back by beta's flapping.
    assert.ok(new NotificationPolicy(() => now).onEvent(event('peer.down', { peer: 'W', peerName: 'w' })));
  });

  test('lag above the threshold for over a minute is notified once per episode', () => {
    let now = 0;
    const policy = new NotificationPolicy(() => now, 30_000);
    assert.deepEqual(policy.onStatus(withLag(45_000)), []);
    now += LagForMs - 1;
    assert.deepEqual(policy.onStatus(withLag(45_000)), []);
    now += 1;
    assert.match(policy.onStatus(withLag(45_000))[0]!.body, /45 s behind \(12 changes pending\)/);
    now += 10_000;
    assert.deepEqual(policy.onStatus(withLag(50_000)), [], 'once per episode');
    assert.deepEqual(policy.onStatus(withLag(0)), []);
    now += 1;
    assert.deepEqual(policy.onStatus(withLag(40_000)), [], 'a new episode starts its minute again');
  });
});
