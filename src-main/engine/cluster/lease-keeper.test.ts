import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeRole } from '../../contract/control.js';
import { ManualClock } from '../clock.js';
import { leaseClockFrom, skewedClock } from './lease-clock.js';
import { LeaseGate } from './lease-gate.js';
import { LeaseKeeper, LeaseSlots, type ClusterView, type KeeperOutput, type KeeperReport } from './lease-keeper.js';
import type { BallotStore, LeaseSettings } from './lease.js';

const settings: LeaseSettings = { leaseMs: 1000, driftRatio: 0.01, stepDownBudgetMs: 300 };
const L = settings.leaseMs;
const budget = settings.stepDownBudgetMs;
/** What one grant lets the primary act for, in its own clock: L·(1 − ρ). */
const span = (lease: LeaseSettings = settings) => lease.leaseMs * (1 - lease.driftRatio);
/** The lease-keeper's vote timeout (not exported): an unanswered request is sent again after it. */
const VoteTimeoutMs = 1000;

const P = 'node-primary';
const B = 'node-backup';
const W = 'node-witness';
const Epoch = 3;

const noPeers = { primaryUp: false, witnessUp: false };
/** What the backup's heartbeat sessions say when the primary is gone and the witness is there. */
const primaryLost = { primaryUp: false, witnessUp: true };


/** The view the main thread gives the worker, as pushCluster builds it (the witness itself has no witnessId). */
function viewFor(role: NodeRole, overrides: Partial<ClusterView> = {}): ClusterView {
  return {
    role,
    epoch: Epoch,
    witnessId: role === 'witness' ? null : W,
    primaryId: role === 'primary' ? null : P,
    canPromote: true,
    lease: settings,
    ...overrides,
  };
}

/** A renewal ping from the primary, as the worker sends it. */
function ping(id: number, epoch = Epoch, leaseMs = L) {
  return { epoch, role: 'primary' as const, lease: id, leaseMs };
}

interface Recorded {
  reports: { at: number; report: KeeperReport }[];
  publishes: { at: number; actUntil: number; enforced: boolean }[];
  voteRequests: { at: number; to: string; epoch: number; reqId: number; sent: boolean }[];
  logs: { msg: string; fields: Record<string, unknown> }[];
  /** What sendVoteRequest answers: false when there is no connection to the witness. */
  connected: boolean;
  /** The shared lease buffer the main thread reads (a LeaseGate's), written like the worker does. */
  slots: Float64Array | null;
  /** Carries a vote request that was sent. */
  deliverVoteRequest: ((to: string, epoch: number, reqId: number) => void) | null;
}

/** A fake KeeperOutput that records what the keeper reports, publishes and sends, stamped with `stamp()`. */
function recorder(stamp: () => number, events: string[] = []): KeeperOutput & Recorded {
  const rec: KeeperOutput & Recorded = {
    reports: [],
    publishes: [],
    voteRequests: [],
    logs: [],
    connected: true,
    slots: null,
    deliverVoteRequest: null,
    report(report) {
      rec.reports.push({ at: stamp(), report });
      events.push(`report ${report.type}`);
    },
    sendVoteRequest(to, epoch, reqId) {
      rec.voteRequests.push({ at: stamp(), to, epoch, reqId, sent: rec.connected });
      if (rec.connected) rec.deliverVoteRequest?.(to, epoch, reqId);
      return rec.connected;
    },
    publish(actUntil, enforced) {
      rec.publishes.push({ at: stamp(), actUntil, enforced });
      if (rec.slots) {
        rec.slots[LeaseSlots.actUntil] = actUntil;
        rec.slots[LeaseSlots.enforced] = enforced ? 1 : 0;
      }
    },
    log(msg, fields) {
      rec.logs.push({ msg, fields });
      events.push(`log ${msg}`);
    },
  };
  return rec;
}

/** A ballot store in memory that records every save (and can fail like a full disk). */
function memoryBallotStore(initial = 0, events: string[] = []): BallotStore & { saved: { epoch: number; candidate: string }[]; failing: boolean } {
  let highest = initial;
  const store = {
    saved: [] as { epoch: number; candidate: string }[],
    failing: false,
    load: () => highest,
    save(epoch: number, candidate: string): void {
      if (store.failing) throw new Error('ENOSPC: no space left on device');
      events.push(`save ${epoch} ${candidate}`);
      highest = epoch;
      store.saved.push({ epoch, candidate });
    },
  };
  return store;
}

/** One node's keeper on a manual clock, started now (the worker always passes a ballot store). */
function node(role: NodeRole, overrides: Partial<ClusterView> = {}, ballotEpoch = 0) {
  const real = new ManualClock();
  real.advance(100_000); // the lease clock (boot time) is not zero when a node starts
  const clock = leaseClockFrom(real);
  const events: string[] = [];
  const out = recorder(() => clock.nowMs(), events);
  const store = memoryBallotStore(ballotEpoch, events);
  const keeper = new LeaseKeeper(clock, out, { leaseMs: (overrides.lease ?? settings).leaseMs }, store);
  const startedAt = clock.nowMs();
  keeper.setView(viewFor(role, overrides));
  return { real, clock, out, store, keeper, startedAt, events };
}
type TestNode = ReturnType<typeof node>;

/** Advances the clock ms by ms (or by stepMs), ticking after each step as the worker's timer does. */
function tickFor(n: TestNode, ms: number, peers: { primaryUp: boolean; witnessUp: boolean }, stepMs = 1): void {
  for (let t = 0; t < ms; t += stepMs) {
    n.real.advance(stepMs);
    n.keeper.tick(peers);
  }
}

/** Ticks until the keeper sends a vote request; returns it. */
function tickUntilVoteRequest(n: TestNode, peers: { primaryUp: boolean; witnessUp: boolean }, limitMs = 10 * L) {
  const before = n.out.voteRequests.length;
  for (let t = 0; t < limitMs && n.out.voteRequests.length === before; t++) {
    n.real.advance(1);
    n.keeper.tick(peers);
  }
  const request = n.out.voteRequests[before];
  assert.ok(request, `no vote request within ${limitMs} ms`);
  return request;
}

/** One renewal answered by a grantor after rttMs; returns when the request went out (t0). */
function renew(n: TestNode, rttMs = 10, epoch = Epoch): number {
  const t0 = n.clock.nowMs();
  const request = n.keeper.leaseRequest();
  assert.ok(request, 'a primary asks for its lease');
  n.real.advance(rttMs);
  n.keeper.onPong({ grant: request.id, grantedEpoch: epoch });
  return t0;
}

function lastPublish(n: TestNode) {
  const last = n.out.publishes.at(-1);
  assert.ok(last, 'something was published');
  return last;
}

const reportTypes = (out: Recorded) => out.reports.map((r) => r.report.type);
const fencedReports = (out: Recorded) => out.reports.filter((r) => r.report.type === 'fenced');

describe('LeaseKeeper on the primary', () => {
  it('with a witness: does not act before its first grant, acts until a step-down budget before the lease ends, fences once in time and acts again after a new grant', () => {
    const n = node('primary');
    assert.equal(n.keeper.enforced, true);
    assert.deepEqual(lastPublish(n), { at: n.startedAt, actUntil: Number.NEGATIVE_INFINITY, enforced: true });
    tickFor(n, 3 * L, noPeers);
    assert.deepEqual(reportTypes(n.out), [], 'no lease, and nothing to fence, before the first grant');
    assert.ok(n.out.publishes.every((p) => p.actUntil === Number.NEGATIVE_INFINITY && p.enforced));

    // Grants that do not back this term change nothing.
    const request = n.keeper.leaseRequest();
    assert.deepEqual(request, { id: 1, leaseMs: L });
    n.keeper.onPong({ grant: request.id, grantedEpoch: Epoch - 1 });
    n.keeper.onPong({ grant: request.id + 100, grantedEpoch: Epoch });
    n.keeper.onPong({ grant: request.id });
    n.keeper.onPong({});
    assert.deepEqual(reportTypes(n.out), []);
    assert.equal(lastPublish(n).actUntil, Number.NEGATIVE_INFINITY);

    const t0 = renew(n, 10);
    const leaseEnd = t0 + span();
    assert.deepEqual(
      n.out.reports.map((r) => r.report),
      [{ type: 'lease-acquired', remainingMs: Math.round(leaseEnd - n.clock.nowMs()) }],
    );
    const acting = lastPublish(n);
    assert.ok(acting.actUntil > n.clock.nowMs(), 'it may act now');
    assert.ok(acting.actUntil <= leaseEnd - budget, `published ${acting.actUntil}: at least the step-down budget before the lease ends (${leaseEnd})`);

    // The grants stop.
    tickFor(n, 2 * L, noPeers);
    const fenced = fencedReports(n.out);
    assert.equal(fenced.length, 1, 'fenced once');
    assert.ok(fenced[0]!.at <= leaseEnd - budget, `fenced at ${fenced[0]!.at}, after ${leaseEnd - budget}`);
    assert.equal(fenced[0]!.at, Math.ceil(leaseEnd - budget), 'and not before the budget is reached either');
    const afterFence = n.out.publishes.filter((p) => p.at >= fenced[0]!.at);
    assert.ok(afterFence.length > 0 && afterFence.every((p) => p.actUntil === Number.NEGATIVE_INFINITY));
    assert.ok(
      n.out.publishes.filter((p) => p.at > t0 && p.at < fenced[0]!.at).every((p) => p.actUntil === leaseEnd - budget),
      'until then it published the same end',
    );

    // A new grant: acting again.
    const t1 = renew(n, 10);
    assert.deepEqual(reportTypes(n.out), ['lease-acquired', 'fenced', 'lease-acquired']);
    assert.equal(lastPublish(n).actUntil, t1 + span() - budget);
  });

  it('keeps acting, and never fences, while a grant comes back every beat', () => {
    const n = node('primary');
    let backedBy = Number.NEGATIVE_INFINITY;
    for (let round = 0; round < 50; round++) {
      backedBy = renew(n, 10);
      tickFor(n, 190, noPeers, 10);
      assert.ok(lastPublish(n).actUntil <= backedBy + span() - budget);
    }
    assert.deepEqual(reportTypes(n.out), ['lease-acquired']);
  });

  it('without a witness acts at once and never fences', () => {
    const n = node('primary', { witnessId: null });
    assert.equal(n.keeper.enforced, false);
    assert.deepEqual(lastPublish(n), { at: n.startedAt, actUntil: Number.POSITIVE_INFINITY, enforced: false });
    for (let round = 0; round < 50; round++) {
      n.keeper.leaseRequest(); // the beats still carry requests; nobody answers
      tickFor(n, 200, noPeers, 10);
    }
    assert.deepEqual(reportTypes(n.out), [], 'no fence without grants');
    assert.ok(n.out.publishes.every((p) => p.actUntil === Number.POSITIVE_INFINITY && !p.enforced));
  });

  it('after a clock jump (machine suspended 10 s) fences on the next tick; the end it published before is already past for the main thread', () => {
    const n = node('primary');
    const gate = new LeaseGate(n.clock);
    n.out.slots = new Float64Array(gate.buffer);
    const t0 = renew(n, 10);
    tickFor(n, 100, noPeers, 10);
    assert.equal(gate.enforced, true);
    assert.equal(gate.mayAct(), true);
    assert.equal(gate.remainingMs(), Math.round(t0 + span() - budget - n.clock.nowMs()));
    const publishedBefore = lastPublish(n).actUntil;

    n.real.advance(10_000); // suspended: the boot clock jumps
    assert.ok(publishedBefore < n.clock.nowMs());
    assert.equal(gate.mayAct(), false, "the main thread's check fails on waking, before the worker has run at all");
    assert.equal(gate.remainingMs(), 0);
    assert.deepEqual(n.out.reports.map((r) => r.report.type), ['lease-acquired']);

    n.keeper.tick(noPeers);
    assert.deepEqual(reportTypes(n.out), ['lease-acquired', 'fenced']);
    assert.equal(fencedReports(n.out)[0]!.at, n.clock.nowMs());
    assert.equal(lastPublish(n).actUntil, Number.NEGATIVE_INFINITY);
    assert.equal(gate.mayAct(), false);
    tickFor(n, 100, noPeers, 10);
    assert.equal(fencedReports(n.out).length, 1);
  });

  it('after a clock jump, a grant for a request sent before the suspension (I/O before timers) fences instead of reviving', () => {
    const n = node('primary');
    renew(n, 10);
    const sentBefore = n.keeper.leaseRequest();
    assert.ok(sentBefore);
    n.real.advance(10_000);
    n.keeper.onPong({ grant: sentBefore.id, grantedEpoch: Epoch });
    assert.deepEqual(reportTypes(n.out), ['lease-acquired', 'fenced']);
    assert.equal(lastPublish(n).actUntil, Number.NEGATIVE_INFINITY);
    n.keeper.tick(noPeers);
    assert.equal(fencedReports(n.out).length, 1);
  });

  it('a new term (epoch) starts without a lease, and grants for the old term do not back it', () => {
    const n = node('primary');
    const old = n.keeper.leaseRequest();
    assert.ok(old);
    n.keeper.setView(viewFor('primary', { epoch: Epoch + 1 }));
    n.keeper.onPong({ grant: old.id, grantedEpoch: Epoch });
    assert.deepEqual(reportTypes(n.out), []);
    assert.equal(lastPublish(n).actUntil, Number.NEGATIVE_INFINITY);
    renew(n, 10, Epoch + 1);
    assert.deepEqual(reportTypes(n.out), ['lease-acquired']);
  });

  it('a lease length changed at run time (config set leaseMs) applies to the next renewal: the primary never counts on more than it asked for', () => {
    const long: LeaseSettings = { ...settings, leaseMs: 3000 };
    const n = node('primary', { lease: long });
    const t0 = renew(n, 10);
    assert.equal(lastPublish(n).actUntil, t0 + span(long) - budget);
    // A request that went out with the old length, answered after the change: it was promised for 3000 ms.
    const sentAt = n.clock.nowMs();
    const inFlight = n.keeper.leaseRequest();
    assert.deepEqual(inFlight, { id: 2, leaseMs: 3000 });
    n.keeper.setView(viewFor('primary', { lease: settings }));
    n.real.advance(10);
    n.keeper.onPong({ grant: inFlight.id, grantedEpoch: Epoch });
    const backedUntil = sentAt + span(long);
    assert.equal(lastPublish(n).actUntil, backedUntil - budget);
    // From now on the requests ask for 1000 ms, and a grant of one backs 1000 ms, not 3000.
    n.real.advance(backedUntil - n.clock.nowMs());
    n.keeper.tick(noPeers);
    assert.deepEqual(reportTypes(n.out), ['lease-acquired', 'fenced']);
    const request = n.keeper.leaseRequest();
    assert.ok(request);
    assert.equal(request.leaseMs, L, 'the renewal asks for the new length');
    const t1 = n.clock.nowMs();
    n.real.advance(10);
    n.keeper.onPong({ grant: request.id, grantedEpoch: Epoch });
    assert.deepEqual(reportTypes(n.out), ['lease-acquired', 'fenced', 'lease-acquired']);
    const actUntil = lastPublish(n).actUntil;
    assert.ok(actUntil <= t1 + span() - budget, `acts until ${actUntil - t1} ms after asking for a ${L} ms promise (at most ${span() - budget})`);
  });

  it('a step-down budget changed at run time (config set stopBudgetMs) applies at once: the fence comes that budget before the lease ends', () => {
    const n = node('primary');
    const t0 = renew(n, 10);
    const leaseEnd = t0 + span();
    const wider: LeaseSettings = { ...settings, stepDownBudgetMs: 600 };
    n.keeper.setView(viewFor('primary', { lease: wider }));
    assert.ok(lastPublish(n).actUntil <= leaseEnd - wider.stepDownBudgetMs);
    tickFor(n, L, noPeers);
    const fenced = fencedReports(n.out);
    assert.equal(fenced.length, 1);
    assert.ok(fenced[0]!.at <= leaseEnd - wider.stepDownBudgetMs, `fenced ${leaseEnd - fenced[0]!.at} ms before the lease ends; the stop hook needs ${wider.stepDownBudgetMs}`);
  });
});

describe('LeaseKeeper on the backup', () => {
  it("grants renewals only to its primary's epoch, and none within one lease of its own start", () => {
    const n = node('backup');
    assert.deepEqual(n.keeper.onPing(P, ping(1)), { refused: 'starting' });
    n.real.advance(L - 1);
    assert.deepEqual(n.keeper.onPing(P, ping(2)), { refused: 'starting' });
    n.real.advance(1);
    assert.deepEqual(n.keeper.onPing(P, ping(3)), { grant: 3, grantedEpoch: Epoch });
    assert.deepEqual(n.keeper.onPing('node-other', ping(4)), { refused: 'not-my-primary' });
    assert.deepEqual(n.keeper.onPing('node-other', ping(5, Epoch - 1)), { refused: 'not-my-primary' });
    assert.deepEqual(n.keeper.onPing(P, ping(6, Epoch - 1)), { refused: 'stale-epoch' });
    assert.deepEqual(n.keeper.onPing(P, ping(7, Epoch, L + 1)), { refused: 'lease-too-long' });
    assert.deepEqual(n.keeper.onPing(P, { epoch: Epoch, role: 'primary' }), {}, 'a beat without a request');
    assert.deepEqual(n.keeper.onPing(P, { epoch: Epoch, role: 'backup', lease: 8 }), {}, 'only a primary asks');
    assert.deepEqual(reportTypes(n.out), []);
    // A primary of a later epoch than the backup knows of (its view lags): reported, and backed.
    assert.deepEqual(n.keeper.onPing('node-other', ping(9, Epoch + 1)), { grant: 9, grantedEpoch: Epoch + 1 });
    assert.deepEqual(n.out.reports.map((r) => r.report), [{ type: 'newer-primary', peerId: 'node-other', epoch: Epoch + 1 }]);
    assert.deepEqual(n.keeper.onPing(P, ping(10)), { refused: 'stale-epoch' }, 'and the older epoch is no longer backed');
  });

  it('does not ask for a vote within one lease of its own start', () => {
    const n = node('backup');
    const request = tickUntilVoteRequest(n, primaryLost);
    assert.deepEqual(request, { at: n.startedAt + L, to: W, epoch: Epoch, reqId: 1, sent: true });
  });

  it('never asks for a vote while its own promise to the primary still runs', () => {
    const n = node('backup');
    n.real.advance(L);
    let lastGrantAt = 0;
    for (let id = 1; id <= 10; id++) {
      assert.deepEqual(n.keeper.onPing(P, ping(id)), { grant: id, grantedEpoch: Epoch });
      lastGrantAt = n.clock.nowMs();
      tickFor(n, 200, { primaryUp: true, witnessUp: true }, 10);
    }
    // The primary is gone (its last renewal reached us at lastGrantAt): we ask once our promise has run out, not before.
    const request = tickUntilVoteRequest(n, primaryLost);
    assert.equal(request.at, lastGrantAt + L);
  });

  it('asks for no vote when it may not promote, when the witness is down, without a witness or while the primary is up; at once when that changes', () => {
    const cases: { what: string; overrides: Partial<ClusterView>; peers: { primaryUp: boolean; witnessUp: boolean }; lift: (n: TestNode) => { primaryUp: boolean; witnessUp: boolean } }[] = [
      {
        what: 'canPromote false',
        overrides: { canPromote: false },
        peers: primaryLost,
        lift: (n) => {
          n.keeper.setView(viewFor('backup'));
          return primaryLost;
        },
      },
      { what: 'witness down', overrides: {}, peers: noPeers, lift: () => primaryLost },
      {
        what: 'no witness',
        overrides: { witnessId: null },
        peers: noPeers,
        lift: (n) => {
          n.keeper.setView(viewFor('backup'));
          return primaryLost;
        },
      },
      { what: 'primary up', overrides: {}, peers: { primaryUp: true, witnessUp: true }, lift: () => primaryLost },
    ];
    for (const c of cases) {
      const n = node('backup', c.overrides);
      tickFor(n, 5 * L, c.peers);
      assert.deepEqual(n.out.voteRequests, [], c.what);
      assert.deepEqual(reportTypes(n.out), [], c.what);
      const peers = c.lift(n);
      n.real.advance(1);
      n.keeper.tick(peers);
      assert.equal(n.out.voteRequests.length, 1, `${c.what}: asks once allowed`);
    }
  });

  it('once it asked, refuses renewals of the old epoch; an explicit refusal restores its grants; a granted vote reports promote with the new epoch', () => {
    const n = node('backup');
    n.real.advance(L);
    assert.deepEqual(n.keeper.onPing(P, ping(1)), { grant: 1, grantedEpoch: Epoch });
    const downSince = n.clock.nowMs() + 1; // the first tick that sees the primary down
    const first = tickUntilVoteRequest(n, primaryLost);
    assert.deepEqual(n.keeper.onPing(P, ping(2)), { refused: 'revoked' }, 'no renewal once the vote is asked for');

    n.keeper.onVoteReply({ reqId: first.reqId + 7, granted: true, epoch: Epoch + 1 });
    assert.deepEqual(reportTypes(n.out), [], 'a reply to some other request is ignored');

    n.real.advance(5);
    n.keeper.onVoteReply({ reqId: first.reqId, granted: false, epoch: Epoch, reason: 'primary-reachable' });
    assert.deepEqual(n.out.reports.map((r) => r.report), [{ type: 'vote-refused', reason: 'primary-reachable' }]);
    assert.deepEqual(n.keeper.onPing(P, ping(3)), { grant: 3, grantedEpoch: Epoch }, 'renewals are granted again after an explicit refusal');
    const renewedAt = n.clock.nowMs();

    const second = tickUntilVoteRequest(n, primaryLost);
    assert.equal(second.at, renewedAt + L, 'the renewed promise runs out first');
    n.real.advance(5);
    n.keeper.onVoteReply({ reqId: second.reqId, granted: true, epoch: Epoch + 1 });
    assert.deepEqual(n.out.reports.at(-1)?.report, { type: 'promote', epoch: Epoch + 1, waitedMs: Math.round(n.clock.nowMs() - downSince) });
    assert.deepEqual(n.keeper.onPing(P, ping(4)), { refused: 'revoked' }, 'the old primary is not renewed after the vote');
  });

  it('keeps granting renewals when the vote request cannot be sent (no connection to the witness)', () => {
    const n = node('backup');
    n.out.connected = false;
    const request = tickUntilVoteRequest(n, primaryLost);
    assert.equal(request.sent, false);
    assert.deepEqual(n.keeper.onPing(P, ping(1)), { grant: 1, grantedEpoch: Epoch });
    n.keeper.onVoteReply({ reqId: request.reqId, granted: true, epoch: Epoch + 1 });
    assert.deepEqual(reportTypes(n.out), [], 'a request never sent is not answered');
  });

  it('after an unanswered request times out and is sent again, an explicit refusal still restores its grants', () => {
    const n = node('backup');
    const first = tickUntilVoteRequest(n, primaryLost);
    const second = tickUntilVoteRequest(n, primaryLost);
    assert.equal(second.at, first.at + VoteTimeoutMs, 'asked again after the timeout');
    assert.deepEqual(n.keeper.onPing(P, ping(1)), { refused: 'revoked' });
    n.keeper.onVoteReply({ reqId: first.reqId, granted: true, epoch: Epoch + 1 });
    assert.deepEqual(reportTypes(n.out), [], 'the late reply to the first request is ignored');
    n.keeper.onVoteReply({ reqId: second.reqId, granted: false, epoch: Epoch, reason: 'primary-reachable' });
    assert.deepEqual(reportTypes(n.out), ['vote-refused']);
    assert.deepEqual(n.keeper.onPing(P, ping(2)), { grant: 2, grantedEpoch: Epoch }, 'the primary can be renewed by the backup again');
  });

  it('an ask never answered, and the primary back up: the backup asks again to settle it, and a refusal restores its grants', () => {
    const n = node('backup');
    const first = tickUntilVoteRequest(n, primaryLost);
    assert.deepEqual(n.keeper.onPing(P, ping(1)), { refused: 'revoked' });
    const settle = tickUntilVoteRequest(n, { primaryUp: true, witnessUp: true });
    assert.equal(settle.at, first.at + VoteTimeoutMs, 'asked again once the first ask timed out, though the primary is up');
    n.keeper.onVoteReply({ reqId: settle.reqId, granted: false, epoch: Epoch, reason: 'primary-reachable' });
    assert.deepEqual(n.keeper.onPing(P, ping(2)), { grant: 2, grantedEpoch: Epoch }, 'the primary is renewed by the backup again');
  });

  it('while a timed-out request may still be answered, a failed attempt to send it again does not restore grants', () => {
    const n = node('backup');
    const first = tickUntilVoteRequest(n, primaryLost);
    n.out.connected = false;
    const second = tickUntilVoteRequest(n, primaryLost);
    assert.equal(second.sent, false);
    assert.deepEqual(n.keeper.onPing(P, ping(1)), { refused: 'revoked' }, 'the first request may have been granted');
    n.keeper.onVoteReply({ reqId: first.reqId, granted: true, epoch: Epoch + 1 });
    assert.deepEqual(reportTypes(n.out), ['promote']);
  });
});

describe('LeaseKeeper on the witness', () => {
  it('votes only when the primary is unreachable for it and its own promise to the primary has expired', () => {
    const n = node('witness');
    n.real.advance(L);
    assert.deepEqual(n.keeper.onPing(P, ping(1)), { grant: 1, grantedEpoch: Epoch });
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, true), { granted: false, epoch: 0, reason: 'primary-reachable' });
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, false), { granted: false, epoch: 0, reason: 'promise-running' });
    n.real.advance(L - 1);
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, false), { granted: false, epoch: 0, reason: 'promise-running' });
    n.real.advance(1);
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, true), { granted: false, epoch: 0, reason: 'primary-reachable' });
    assert.deepEqual(n.keeper.onVoteRequest(P, { epoch: Epoch }, false), { granted: false, epoch: 0, reason: 'asker-is-primary' });
    assert.deepEqual(n.store.saved, [], 'nothing stored for a refusal');
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, false), { granted: true, epoch: Epoch + 1 });
    assert.deepEqual(n.store.saved, [{ epoch: Epoch + 1, candidate: B }]);
    assert.deepEqual(n.keeper.onPing(P, ping(2)), { refused: 'revoked' }, 'the old primary cannot renew after the vote');
    assert.deepEqual(n.keeper.onPing(B, ping(3, Epoch + 1)), { grant: 3, grantedEpoch: Epoch + 1 }, 'the new primary can');
    assert.deepEqual(reportTypes(n.out), []);
  });

  it('stores the vote durably before answering it, and answers nothing when it cannot store it', () => {
    const n = node('witness');
    n.real.advance(L);
    n.store.failing = true;
    assert.throws(() => n.keeper.onVoteRequest(B, { epoch: Epoch }, false), /ENOSPC/);
    assert.deepEqual(n.store.saved, []);
    n.store.failing = false;
    n.events.length = 0;
    const reply = n.keeper.onVoteRequest(B, { epoch: Epoch }, false);
    assert.deepEqual(reply, { granted: true, epoch: Epoch + 1 }, 'the epoch not stored was not given away');
    assert.deepEqual(n.events, [`save ${Epoch + 1} ${B}`, 'log vote granted']);
  });

  it('gives one vote per epoch: a second candidate asking with the same known epoch is refused as stale', () => {
    const n = node('witness');
    n.real.advance(L);
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, false), { granted: true, epoch: Epoch + 1 });
    assert.deepEqual(n.keeper.onVoteRequest('node-other', { epoch: Epoch }, false), { granted: false, epoch: Epoch + 1, reason: 'stale-epoch' });
    // The winner asking again from the same epoch never heard the answer: the same epoch, not a new one.
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, false), { granted: true, epoch: Epoch + 1 });
    assert.deepEqual(n.store.saved, [{ epoch: Epoch + 1, candidate: B }]);
  });

  it('after a restart waits one lease before voting or granting, and keeps the epochs it gave', () => {
    const n = node('witness', { epoch: 7 }, 7);
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: 7 }, false), { granted: false, epoch: 7, reason: 'starting' });
    assert.deepEqual(n.keeper.onPing(P, ping(1, 7)), { refused: 'starting' });
    n.real.advance(L - 1);
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: 7 }, false), { granted: false, epoch: 7, reason: 'starting' });
    n.real.advance(1);
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: 6 }, false), { granted: false, epoch: 7, reason: 'stale-epoch' });
    assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: 7 }, false), { granted: true, epoch: 8 });
  });

  it('the primary and the backup do not vote', () => {
    for (const role of ['primary', 'backup'] as const) {
      const n = node(role);
      n.real.advance(2 * L);
      assert.deepEqual(n.keeper.onVoteRequest(B, { epoch: Epoch }, false), { granted: false, epoch: 0, reason: 'not-a-witness' });
      assert.deepEqual(n.store.saved, []);
    }
  });
});

type Role = 'primary' | 'backup' | 'witness';

interface SimOptions {
  /** Clock rates against real time. */
  primaryRate: number;
  witnessRate: number;
  /** One-way delay of every message. */
  delayMs: number;
  /** From this real time on, nothing reaches the primary or leaves it. */
  cutAt: number;
  /** How often each worker ticks its keeper. */
  tickMs: number;
  lease?: LeaseSettings;
  /** A lease setting changed at run time (config set) on some of the nodes. */
  change?: { at: number; lease: LeaseSettings; on: Role[] };
  /** Ask the witness for a vote every ms after the cut, to find the earliest moment it would grant one. */
  probe: boolean;
}

interface SimOutcome {
  primaryReports: KeeperReport['type'][];
  fencedAt: number | null;
  /** The last real ms at which the primary's main thread would still pass its lease check. */
  lastMayAct: number | null;
  /** When the witness first granted a vote (real time). */
  voteAt: number | null;
  promotedAt: number | null;
  promotedEpoch: number | null;
}

/**
 * Three keepers wired by hand, as their workers would: the primary's beats (every 200 ms) carry
 * its renewal requests to the backup and the witness, their pongs carry the grants back; the
 * backup's vote requests go to the witness. Every node has its own clock rate.
 */
function simulate(o: SimOptions): SimOutcome {
  const lease = o.lease ?? settings;
  const real = new ManualClock();
  const now = () => real.monotonicMs();
  const clocks = {
    primary: skewedClock(real, o.primaryRate, 5000),
    backup: skewedClock(real, o.witnessRate, 777),
    witness: skewedClock(real, o.witnessRate, 123),
  };
  const outs = { primary: recorder(now), backup: recorder(now), witness: recorder(now) };
  const keepers = {
    primary: new LeaseKeeper(clocks.primary, outs.primary, { leaseMs: lease.leaseMs }, memoryBallotStore()),
    backup: new LeaseKeeper(clocks.backup, outs.backup, { leaseMs: lease.leaseMs }, memoryBallotStore()),
    witness: new LeaseKeeper(clocks.witness, outs.witness, { leaseMs: lease.leaseMs }, memoryBallotStore()),
  };
  const gate = new LeaseGate(clocks.primary);
  outs.primary.slots = new Float64Array(gate.buffer);
  for (const role of ['primary', 'backup', 'witness'] as const) keepers[role].setView(viewFor(role, { lease }));

  const pending: { at: number; viaPrimary: boolean; run: () => void }[] = [];
  const send = (viaPrimary: boolean, run: () => void) => pending.push({ at: now() + o.delayMs, viaPrimary, run });
  let voteAt: number | null = null;
  const askWitness = (from: string, epoch: number) => {
    const reply = keepers.witness.onVoteRequest(from, { epoch }, now() < o.cutAt);
    if (reply.granted) voteAt ??= now();
    return reply;
  };
  outs.backup.deliverVoteRequest = (_to, epoch, reqId) =>
    send(false, () => {
      const reply = askWitness(B, epoch);
      send(false, () => keepers.backup.onVoteReply({ reqId, ...reply }));
    });

  let lastMayAct: number | null = null;
  const maxLeaseMs = Math.max(lease.leaseMs, o.change?.lease.leaseMs ?? 0);
  const end = o.cutAt + 3 * maxLeaseMs + 500;
  for (let t = 0; t <= end; t++, real.advance(1)) {
    if (o.change && t === o.change.at) for (const role of o.change.on) keepers[role].setView(viewFor(role, { lease: o.change.lease }));
    const due = pending.filter((m) => m.at <= t);
    for (const m of due) {
      pending.splice(pending.indexOf(m), 1);
      if (!(m.viaPrimary && m.at >= o.cutAt)) m.run();
    }
    if (t % 200 === 0) {
      const request = keepers.primary.leaseRequest();
      if (request) {
        for (const grantor of [keepers.backup, keepers.witness]) {
          send(true, () => {
            const pong = grantor.onPing(P, ping(request.id, Epoch, request.leaseMs));
            send(true, () => keepers.primary.onPong(pong));
          });
        }
      }
    }
    if (t % o.tickMs === 0) {
      const connected = t < o.cutAt;
      keepers.primary.tick({ primaryUp: false, witnessUp: connected });
      keepers.backup.tick({ primaryUp: connected, witnessUp: true });
      keepers.witness.tick({ primaryUp: connected, witnessUp: false });
    }
    if (o.probe && t >= o.cutAt && voteAt === null) askWitness(B, Epoch);
    if (gate.mayAct()) lastMayAct = t;
  }
  const fenced = fencedReports(outs.primary)[0];
  const promoted = outs.backup.reports.find((r) => r.report.type === 'promote');
  return {
    primaryReports: reportTypes(outs.primary),
    fencedAt: fenced?.at ?? null,
    lastMayAct,
    voteAt,
    promotedAt: promoted?.at ?? null,
    promotedEpoch: promoted?.report.type === 'promote' ? promoted.report.epoch : null,
  };
}

/** The safety property: the primary has stopped (fenced, its stop hook's budget spent, its main thread's check failing) before the witness votes. */
function assertSafe(o: SimOptions, r: SimOutcome): void {
  const label = JSON.stringify(o);
  const lease = o.change?.lease ?? o.lease ?? settings;
  assert.deepEqual(r.primaryReports, ['lease-acquired', 'fenced'], `${label}: acted, then fenced once`);
  assert.ok(r.fencedAt !== null && r.fencedAt >= o.cutAt, `${label}: fenced after the cut`);
  assert.ok(r.voteAt !== null, `${label}: the witness votes in the end`);
  assert.ok(r.fencedAt < r.voteAt, `${label}: fenced at ${r.fencedAt}, but the witness could vote at ${r.voteAt}`);
  assert.ok(r.lastMayAct !== null && r.lastMayAct < r.voteAt, `${label}: the main thread's check passed until ${r.lastMayAct}, the vote came at ${r.voteAt}`);
  if (o.tickMs === 1) {
    const stopBudgetReal = lease.stepDownBudgetMs / o.primaryRate;
    assert.ok(r.fencedAt + stopBudgetReal <= r.voteAt, `${label}: the stop hook's budget ends at ${r.fencedAt + stopBudgetReal}, after the vote at ${r.voteAt}`);
  }
}

describe('LeaseKeeper: primary, backup and witness wired together', () => {
  const rho = settings.driftRatio;
  /** [primary, witness] clock rates: the witness's clock faster than the primary's by up to ρ. */
  const rates: [number, number][] = [
    [1, 1],
    [1, 1 + rho / 4],
    [1, 1 + rho / 2],
    [1, 1 + (3 * rho) / 4],
    [1, 1 + rho],
    [1 - rho / 2, 1 + rho / 2 - 0.0001],
    [1.02, 1.02 * (1 + rho)],
  ];
  const phases = [0, 1, 3, 11, 57, 120, 199];

  it('with the primary cut off from both at T, it fences strictly before the earliest moment the witness would vote, for clock drift up to ρ', () => {
    for (const [primaryRate, witnessRate] of rates) {
      for (const delayMs of [1, 5, 40]) {
        for (const tickMs of [1, 50]) {
          for (const phase of phases) {
            const o: SimOptions = { primaryRate, witnessRate, delayMs, cutAt: 3000 + phase, tickMs, probe: true };
            assertSafe(o, simulate(o));
          }
        }
      }
    }
  });

  it('the backup is promoted (with the next epoch) after the cut, and only after the primary stopped', () => {
    for (const [primaryRate, witnessRate] of rates) {
      for (const phase of phases) {
        const o: SimOptions = { primaryRate, witnessRate, delayMs: 5, cutAt: 3000 + phase, tickMs: 50, probe: false };
        const r = simulate(o);
        assertSafe(o, r);
        assert.equal(r.promotedEpoch, Epoch + 1);
        assert.ok(r.promotedAt !== null && r.promotedAt > r.voteAt!);
        assert.ok(r.promotedAt - o.cutAt < 2 * L + VoteTimeoutMs, `${JSON.stringify(o)}: promoted ${r.promotedAt - o.cutAt} ms after the cut`);
      }
    }
  });

  it('the same harness sees the overlap when the witness clock runs far faster than allowed (the check is not vacuous)', () => {
    const outcomes = phases.map((phase) => simulate({ primaryRate: 1, witnessRate: 2, delayMs: 5, cutAt: 3000 + phase, tickMs: 1, probe: true }));
    assert.ok(outcomes.some((r) => r.fencedAt !== null && r.voteAt !== null && r.fencedAt >= r.voteAt));
  });

  it('stays safe when the lease length is changed at run time (config set leaseMs), on every node or on the primary only', () => {
    const long: LeaseSettings = { ...settings, leaseMs: 3000 };
    const changes: { from: LeaseSettings; to: LeaseSettings; on: Role[] }[] = [
      { from: long, to: settings, on: ['primary', 'backup', 'witness'] },
      { from: long, to: settings, on: ['primary'] },
      { from: settings, to: long, on: ['primary', 'backup', 'witness'] },
    ];
    for (const change of changes) {
      for (const [primaryRate, witnessRate] of [rates[0]!, rates[4]!]) {
        for (const phase of [0, 57, 120]) {
          const o: SimOptions = {
            primaryRate,
            witnessRate,
            delayMs: 5,
            lease: change.from,
            change: { at: 4000, lease: change.to, on: change.on },
            cutAt: 4000 + change.from.leaseMs + phase,
            tickMs: 1,
            probe: true,
          };
          assertSafe(o, simulate(o));
        }
      }
    }
  });
});
