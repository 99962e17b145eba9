import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ObjectStatus, PeerStatus, StatusReport } from '../contract/control.js';
import { trayState } from './tray-state.js';

const peer = (overrides: Partial<PeerStatus> = {}): PeerStatus => ({
  id: 'P',
  name: 'beta',
  role: 'backup',
  address: '10.0.0.2:7420',
  state: 'up',
  rttMs: 1,
  rtt: null,
  lastSeenAt: null,
  stateSince: '2027-01-01T00:00:00Z',
  link: 'connected',
  linkBytes: { sent: 0, received: 0 },
  pairedAt: '2027-01-01T00:00:00Z',
  ...overrides,
});
const object = (overrides: Partial<ObjectStatus> = {}): ObjectStatus => ({ id: 'f-1', kind: 'folder', source: '/srv/shared', target: '/srv/shared', state: 'in-sync', lagMs: 0, pending: 0, error: null, progress: null, skipped: 0, ...overrides });
const status = (overrides: { peers?: PeerStatus[]; objects?: ObjectStatus[]; warnings?: string[]; acting?: boolean; role?: StatusReport['node']['role']; policy?: 'automatic' | 'ask' } = {}): StatusReport =>
  ({
    node: { id: 'N', name: 'alpha', role: overrides.role ?? 'primary', epoch: 1, listen: '', heartbeatPort: 0, version: '', pid: 1, startedAt: '', roleSince: '', leaseMs: null, acting: overrides.acting ?? true, maintenance: false, failoverPolicy: overrides.policy ?? 'automatic' },
    peers: overrides.peers ?? [peer()],
    objects: overrides.objects ?? [object()],
    witness: null,
    license: { warnings: overrides.warnings ?? [], state: overrides.warnings?.length ? 'expired' : 'valid' } as StatusReport['license'],
  }) as StatusReport;

describe('tray state', () => {
  test('green when protected and in sync', () => {
    assert.deepEqual(trayState(status()), { colour: 'green', summary: 'Understudy: 1 object protected and in sync (primary)' });
  });

  test('amber: catching up, a suspect peer, a license that needs attention', () => {
    assert.equal(trayState(status({ objects: [object({ state: 'catching-up', pending: 40 })] })).colour, 'amber');
    assert.match(trayState(status({ peers: [peer({ state: 'suspect' })] })).summary, /backup 'beta' is missing heartbeats/);
    assert.match(trayState(status({ warnings: ['The license expired'] })).summary, /license: expired/);
  });

  test('red: the peer down, an error, replication paused, a primary that stepped down; the worst comes first', () => {
    const down = trayState(status({ peers: [peer({ state: 'down' })], objects: [object({ state: 'paused' })] }));
    assert.equal(down.colour, 'red');
    assert.equal(down.summary, "Understudy: backup 'beta' is down (+1 more)");
    assert.equal(trayState(status({ objects: [object({ state: 'error', error: 'disk full' })] })).colour, 'red');
    assert.equal(trayState(status({ acting: false })).colour, 'red');
    assert.equal(trayState(null).colour, 'red');
  });

  test('an object the admin paused is amber, and says how much it holds back; "ask me" stays green but is said', () => {
    const paused = trayState(status({ objects: [object({ state: 'paused', paused: true, pending: 12 })] }));
    assert.deepEqual(paused, { colour: 'amber', summary: 'Understudy: /srv/shared is paused by you (12 changes held back)' });
    assert.deepEqual(trayState(status({ policy: 'ask' })), { colour: 'green', summary: 'Understudy: 1 object protected and in sync (primary; failover: ask me)' });
  });

  test('a witness down is amber, not red: the pair still protects', () => {
    assert.equal(trayState(status({ peers: [peer(), peer({ id: 'W', name: 'w', role: 'witness', state: 'down' })] })).colour, 'amber');
  });
});
