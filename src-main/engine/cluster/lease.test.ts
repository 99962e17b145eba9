import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../clock.js';
import { leaseClockFrom, skewedClock } from './lease-clock.js';
import { LeaseGrantor, PrimaryLease, WitnessBallot, type BallotStore, type LeaseSettings } from './lease.js';

const settings: LeaseSettings = { leaseMs: 1000, driftRatio: 0.01, stepDownBudgetMs: 300 };


function memoryBallotStore(initial = 0): BallotStore & { saved: { epoch: number; candidate: string }[] } {
  let highest = initial;
  const saved: { epoch: number; candidate: string }[] = [];
  return {
    saved,
    load: () => highest,
    save(epoch, candidate) {
      highest = epoch;
      saved.push({ epoch, candidate });
    },
  };
}

describe('PrimaryLease and LeaseGrantor', () => {
  it("ends the primary's lease before the grantor's promise, with clocks 1% apart either way", () => {
    for (const [primaryRate, grantorRate] of [
      [1.0, 0.99],
      [0.99, 1.0],
      [1.0, 1.0],
      [1.0049, 0.9951],
    ] as const) {
      const real = new ManualClock();
      const primaryClock = skewedClock(real, primaryRate, 5000);
      const grantorClock = skewedClock(real, grantorRate, 123);
      const lease = new PrimaryLease(primaryClock, settings, 3);
      const grantor = new LeaseGrantor(grantorClock, settings, grantorClock.nowMs() - settings.leaseMs);
      const id = lease.request();
      real.advance(7); // the request travels
      assert.deepEqual(grantor.grant(3), { ok: true });
      real.advance(7); // the grant travels back
      lease.granted(id, 3);
      // Step through real time: whenever the primary still thinks it holds the lease, the grantor's promise must still run.
      let last = 0;
      for (let t = 0; t < 2000; t++) {
        if (lease.valid()) {
          assert.equal(grantor.promiseExpired(), false, `rates ${primaryRate}/${grantorRate}: promise expired while the lease ran (t=${t})`);
          last = t;
        }
        real.advance(1);
      }
      assert.ok(last > 900, `the lease lasted about L (${last} ms)`);
    }
  });

  it('keeps the lease on one grant, ignores grants for another epoch or after release, and says when to step down', () => {
    const real = new ManualClock();
    const clock = leaseClockFrom(real);
    const lease = new PrimaryLease(clock, settings, 2);
    assert.equal(lease.valid(), false, 'no lease before any grant');
    const stale = lease.request();
    lease.granted(stale, 1);
    assert.equal(lease.valid(), false, 'a grant for epoch 1 does not back epoch 2');
    const id = lease.request();
    lease.granted(id, 2);
    assert.equal(lease.valid(), true);
    real.advance(settings.leaseMs * (1 - settings.driftRatio) - settings.stepDownBudgetMs - 1);
    assert.equal(lease.mustStepDown(), false);
    real.advance(2);
    assert.equal(lease.mustStepDown(), true, 'stepping down starts a stop-hook budget before the end');
    assert.equal(lease.valid(), true);
    real.advance(settings.stepDownBudgetMs);
    assert.equal(lease.valid(), false);
    const again = lease.request();
    lease.release();
    lease.granted(again, 2);
    assert.equal(lease.valid(), false, 'a released lease is not renewed by a late grant');
  });

  it('makes a restarted grantor wait one lease before it grants or lets anyone promote', () => {
    const real = new ManualClock();
    const clock = leaseClockFrom(real);
    real.advance(50_000);
    const grantor = new LeaseGrantor(clock, settings, clock.nowMs());
    assert.deepEqual(grantor.grant(1), { ok: false, reason: 'starting' });
    assert.equal(grantor.promiseExpired(), false, 'a node that just started has not waited out its forgotten promises');
    real.advance(settings.leaseMs);
    assert.equal(grantor.promiseExpired(), true);
    assert.deepEqual(grantor.grant(1), { ok: true });
    assert.equal(grantor.promiseExpired(), false);
    grantor.revokeBelow(2);
    assert.deepEqual(grantor.grant(1), { ok: false, reason: 'revoked' });
    assert.deepEqual(grantor.grant(2), { ok: true });
    assert.deepEqual(grantor.grant(1), { ok: false, reason: 'revoked' });
  });
});

describe('WitnessBallot', () => {
  function witness(initial = 0) {
    const real = new ManualClock();
    const clock = leaseClockFrom(real);
    const grantor = new LeaseGrantor(clock, settings, clock.nowMs() - settings.leaseMs);
    const store = memoryBallotStore(initial);
    return { real, clock, grantor, store, ballot: new WitnessBallot(grantor, store) };
  }

  it('votes only when it cannot reach the primary and its promise to it has run out', () => {
    const { real, grantor, store, ballot } = witness();
    grantor.grant(1);
    assert.deepEqual(ballot.vote('backup', 1, true), { ok: false, reason: 'primary-reachable' });
    assert.deepEqual(ballot.vote('backup', 1, false), { ok: false, reason: 'promise-running' });
    real.advance(settings.leaseMs);
    assert.deepEqual(ballot.vote('backup', 1, false), { ok: true, epoch: 2 });
    assert.deepEqual(store.saved, [{ epoch: 2, candidate: 'backup' }], 'the epoch is stored before the answer');
    assert.deepEqual(grantor.grant(1), { ok: false, reason: 'revoked' }, 'the old primary cannot renew after the vote');
  });

  it('gives each epoch once: a second candidate that knows only the old epoch is refused', () => {
    const { real, ballot } = witness();
    real.advance(settings.leaseMs);
    assert.deepEqual(ballot.vote('a', 4, false), { ok: true, epoch: 5 });
    assert.deepEqual(ballot.vote('b', 4, false), { ok: false, reason: 'stale-epoch' });
    assert.deepEqual(ballot.vote('b', 5, false), { ok: true, epoch: 6 });
  });

  it('answers a candidate that never heard its vote (a lost reply) with the same epoch again, and nobody else', () => {
    const { real, ballot } = witness();
    real.advance(settings.leaseMs);
    assert.deepEqual(ballot.vote('backup', 4, false), { ok: true, epoch: 5 });
    // The reply was lost: the backup asks again, still knowing epoch 4.
    assert.deepEqual(ballot.vote('backup', 4, false), { ok: true, epoch: 5 });
    assert.deepEqual(ballot.vote('other', 4, false), { ok: false, reason: 'stale-epoch' });
    assert.deepEqual(ballot.vote('backup', 3, false), { ok: false, reason: 'stale-epoch' });
  });

  it('hands over at once on a switchover, without waiting for the promise', () => {
    const { grantor, ballot } = witness();
    grantor.grant(3);
    assert.deepEqual(ballot.vote('backup', 3, true, true), { ok: true, epoch: 4 });
  });

  it('after a restart remembers its epochs and waits out one lease before voting', () => {
    const first = witness();
    first.real.advance(settings.leaseMs);
    first.grantor.grant(7);
    // Killed and restarted during a partition: a new grantor (promises forgotten), the same store.
    const restartedAt = first.clock.nowMs();
    const grantor = new LeaseGrantor(first.clock, settings, restartedAt);
    const ballot = new WitnessBallot(grantor, first.store);
    assert.deepEqual(ballot.vote('backup', 7, false), { ok: false, reason: 'starting' });
    first.real.advance(settings.leaseMs);
    assert.deepEqual(ballot.vote('backup', 7, false), { ok: true, epoch: 8 });
  });
});
