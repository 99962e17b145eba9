import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ObjectStatus } from '../../contract/control.js';
import { switchoverReadiness, type ReadinessFacts } from './readiness.js';

const Now = Date.UTC(2027, 0, 1, 12);
const object = (overrides: Partial<ObjectStatus> = {}): ObjectStatus => ({
  id: 'f-1',
  kind: 'folder',
  source: '/a',
  target: '/b',
  state: 'in-sync',
  lagMs: 0,
  pending: 0,
  error: null,
  progress: null,
  skipped: 0,
  lastAudit: { at: new Date(Now - 30_000).toISOString(), result: 'clean', differences: 0, repaired: 0, scope: 'index+metadata', ms: 40, detail: null },
  ...overrides,
});
const facts = (overrides: Partial<ReadinessFacts> = {}): ReadinessFacts => ({
  role: 'primary',
  peerName: 'beta',
  peerState: 'up',
  linkConnected: true,
  maintenance: false,
  switching: false,
  acting: true,
  witness: { name: 'w', state: 'up' },
  objects: [object()],
  hooks: { stopHere: true, startHere: true },
  nowMs: Now,
  ...overrides,
});
const blockers = (f: ReadinessFacts) => switchoverReadiness(f).checks.filter((c) => c.level === 'blocker').map((c) => c.detail);
const warnings = (f: ReadinessFacts) => switchoverReadiness(f).checks.filter((c) => c.level === 'warning').map((c) => c.detail);

describe('switchover readiness', () => {
  test('a healthy pair is ready, with nothing to look at', () => {
    assert.equal(switchoverReadiness(facts()).ready, true);
    assert.deepEqual(warnings(facts()), []);
  });

  test('each blocker is named: peer down, maintenance, no lease, lag, a failed audit, not paired', () => {
    assert.match(blockers(facts({ peerState: 'down', linkConnected: false })).join(), /'beta' is down, data link disconnected/);
    assert.match(blockers(facts({ maintenance: true })).join(), /maintenance mode is on/);
    assert.match(blockers(facts({ acting: false })).join(), /holds no lease/);
    assert.match(blockers(facts({ objects: [object({ state: 'catching-up', pending: 12, lagMs: 900 })] })).join(), /f-1 is catching-up, 12 pending, lag 900 ms/);
    assert.match(blockers(facts({ objects: [object({ lastAudit: { ...object().lastAudit!, result: 'failed', detail: 'disk error' } })] })).join(), /last audit of f-1 failed: disk error/);
    assert.equal(switchoverReadiness(facts({ peerName: null, role: 'standalone' })).ready, false);
    assert.equal(switchoverReadiness(facts({ maintenance: true })).ready, false);
  });

  test('a paused object blocks, and says how to resume it', () => {
    const f = facts({ objects: [object({ state: 'paused', paused: true, pending: 4, lagMs: 2000 })] });
    assert.equal(switchoverReadiness(f).ready, false);
    assert.match(blockers(f).join(' | '), /f-1 is paused: its changes are not sent to the backup \('understudy resume f-1'\)/);
  });

  test('warnings do not block: no witness, an old or missing audit, no hooks', () => {
    const f = facts({ witness: null, objects: [object({ lastAudit: null }), object({ id: 'd-2', lastAudit: { ...object().lastAudit!, at: new Date(Now - 3_600_000).toISOString() } })], hooks: { stopHere: false, startHere: false } });
    assert.equal(switchoverReadiness(f).ready, true);
    const said = warnings(f).join(' | ');
    assert.match(said, /no witness/);
    assert.match(said, /f-1 has not been audited yet/);
    assert.match(said, /d-2 was last audited 3600 s ago/);
    assert.match(said, /no stop hook on this node/);
  });
});
