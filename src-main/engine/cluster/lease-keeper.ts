/**
 * The cluster's timing rules in one place, run by the heartbeat worker thread (so a busy main
 * thread can never delay a renewal or a step-down): the primary's lease, the grants a backup
 * or witness gives, the backup's request for a vote and the witness's ballot. It only decides;
 * the worker carries its messages, and the main thread acts on what it reports.
 *
 * Leases are enforced only when the pair has a witness. Without one, a partition and a crash
 * look the same, so the primary never steps down and the backup never promotes by itself
 * (shared/docs/failover-notes.md, "Without a witness").
 */
import type { NodeRole } from '../../contract/control.js';
import { LeaseGrantor, PrimaryLease, WitnessBallot, type BallotStore, type LeaseSettings } from './lease.js';
import type { LeaseClock } from './lease-clock.js';

export interface ClusterView {
  role: NodeRole;
  epoch: number;
  /** The witness's node id, or null: leases are enforced only with a witness. */
  witnessId: string | null;
  /** The primary's node id as this node knows it (null on the primary itself). */
  primaryId: string | null;
  /** The backup may ask for a vote: no maintenance, not too far behind. */
  canPromote: boolean;
  lease: LeaseSettings;
}

export type KeeperReport =
  | { type: 'fenced'; reason: string }
  | { type: 'lease-acquired'; remainingMs: number }
  | { type: 'promote'; epoch: number; waitedMs: number }
  | { type: 'vote-refused'; reason: string }
  | { type: 'newer-primary'; peerId: string; epoch: number };

export interface KeeperOutput {
  report(message: KeeperReport): void;
  sendVoteRequest(to: string, epoch: number, reqId: number): boolean;
  /** Publishes until when (lease clock) this node may act as primary: -Infinity when not, +Infinity when leases are not enforced. */
  publish(actUntil: number, enforced: boolean): void;
  log(msg: string, fields: Record<string, unknown>): void;
}

/** Slots of the shared lease buffer, read by the main thread before every externally visible action. */
export const LeaseSlots = { actUntil: 0, enforced: 1 } as const;

const VoteTimeoutMs = 1000;
const VoteRetryMs = 300;

export class LeaseKeeper {
  private view: ClusterView | null = null;
  private lease: PrimaryLease | null = null;
  private acting = false;
  private readonly grantor: LeaseGrantor;
  private readonly ballot: WitnessBallot | null;
  private vote: { reqId: number; sentAt: number; epoch: number; refuseBefore: number } | null = null;
  private nextVoteAt = 0;
  private nextReqId = 1;
  private primaryDownSince: number | null = null;

  constructor(
    private readonly clock: LeaseClock,
    private readonly out: KeeperOutput,
    settings: Pick<LeaseSettings, 'leaseMs'>,
    ballotStore: BallotStore | null,
  ) {
    this.grantor = new LeaseGrantor(clock, settings, clock.nowMs());
    this.ballot = ballotStore ? new WitnessBallot(this.grantor, ballotStore) : null;
  }

  get enforced(): boolean {
    return this.view?.witnessId != null;
  }

  setView(view: ClusterView): void {
    const previous = this.view;
    this.view = view;
    if (view.role !== 'primary') {
      this.lease = null;
      this.acting = false;
    } else if (!this.lease || previous?.epoch !== view.epoch || previous.role !== 'primary') {
      this.lease = new PrimaryLease(this.clock, view.lease, view.epoch);
      // A new term starts without a lease: nothing is done as primary before the first grant.
      this.acting = false;
    }
    if (view.role !== 'backup') this.vote = null;
    this.evaluate();
  }

  /** One round of beats: the primary's renewal request (its id and the lease length it asks for), carried by every ping of the round. */
  leaseRequest(): { id: number; leaseMs: number } | undefined {
    if (!this.lease || !this.view) return undefined;
    // The lease keeps the term's settings; the length asked for now (config set changes it at
    // run time) is the one a grant of this request is counted for.
    const leaseMs = this.view.lease.leaseMs;
    return { id: this.lease.request(leaseMs), leaseMs };
  }

  /** A ping arrived from `from`; returns what our pong adds to it (a grant or a refusal). */
  onPing(from: string, ping: { epoch: number; role?: NodeRole | undefined; lease?: number | undefined; leaseMs?: number | undefined }): { grant?: number; grantedEpoch?: number; refused?: string } {
    const view = this.view;
    if (!view) return {};
    if (ping.role === 'primary' && ping.epoch > view.epoch && view.role !== 'witness') {
      this.out.report({ type: 'newer-primary', peerId: from, epoch: ping.epoch });
    }
    if (ping.lease === undefined || ping.role !== 'primary') return {};
    if (view.role !== 'backup' && view.role !== 'witness') return { refused: `i-am-${view.role}` };
    if (view.role === 'backup' && from !== view.primaryId && ping.epoch <= view.epoch) return { refused: 'not-my-primary' };
    // A promise longer than our own lease could outlast the wait after our restart: refused,
    // so a primary set up with a longer lease than its grantors steps down instead of risking two primaries.
    if (ping.leaseMs !== undefined && ping.leaseMs > view.lease.leaseMs) return { refused: 'lease-too-long' };
    const result = this.grantor.grant(ping.epoch, ping.leaseMs);
    // The grant names the epoch it is for: our own epoch may lag behind the primary's.
    return result.ok ? { grant: ping.lease, grantedEpoch: ping.epoch } : { refused: result.reason };
  }

  onPong(pong: { grant?: number | undefined; grantedEpoch?: number | undefined }): void {
    if (pong.grant !== undefined && pong.grantedEpoch !== undefined && this.lease) {
      this.lease.granted(pong.grant, pong.grantedEpoch);
      this.evaluate();
    }
  }

  /** The witness's side of a vote. `primaryReachable`: the witness's own beats to the primary are answered. */
  onVoteRequest(from: string, request: { epoch: number }, primaryReachable: boolean): { granted: boolean; epoch: number; reason?: string } {
    if (!this.ballot || this.view?.role !== 'witness') return { granted: false, epoch: 0, reason: 'not-a-witness' };
    if (from === this.view.primaryId) return { granted: false, epoch: this.ballot.highestEpoch, reason: 'asker-is-primary' };
    const result = this.ballot.vote(from, request.epoch, primaryReachable);
    this.out.log(result.ok ? 'vote granted' : 'vote refused', { candidate: from, knownEpoch: request.epoch, ...result });
    return result.ok ? { granted: true, epoch: result.epoch } : { granted: false, epoch: this.ballot.highestEpoch, reason: result.reason };
  }

  onVoteReply(reply: { reqId: number; granted: boolean; epoch: number; reason?: string | undefined }): void {
    const vote = this.vote;
    if (!vote || reply.reqId !== vote.reqId) return;
    this.vote = null;
    if (reply.granted && this.view?.role === 'backup') {
      this.out.report({ type: 'promote', epoch: reply.epoch, waitedMs: Math.round(this.clock.nowMs() - (this.primaryDownSince ?? vote.sentAt)) });
      return;
    }
    // An explicit refusal: the witness gave no one a new epoch, so our grants may resume.
    this.grantor.restoreRefusal(vote.refuseBefore);
    this.out.report({ type: 'vote-refused', reason: reply.reason ?? 'refused' });
  }

  /** Called often (a few times per beat interval) with what the heartbeat sessions know. */
  tick(peers: { primaryUp: boolean; witnessUp: boolean }): void {
    const now = this.clock.nowMs();
    const view = this.view;
    if (!view) return;
    this.evaluate();
    if (view.role !== 'backup') return;
    if (peers.primaryUp) {
      this.primaryDownSince = null;
      // An ask left unanswered keeps us refusing the primary's renewals: ask again to settle it.
      // The witness refuses while it reaches the primary (which restores our grants), or repeats
      // the epoch it already gave us (then the old primary can renew nowhere and steps down).
      if (this.vote && now - this.vote.sentAt >= VoteTimeoutMs && peers.witnessUp && this.enforced) this.askForVote(view, now);
      return;
    }
    this.primaryDownSince ??= now;
    if (!this.enforced || !view.canPromote || !peers.witnessUp) return;
    if (this.vote && now - this.vote.sentAt < VoteTimeoutMs) return;
    // Our own promise to the old primary must have run out first (and the restart wait be over).
    if (now < this.nextVoteAt || !this.grantor.promiseExpired()) return;
    this.askForVote(view, now);
  }

  private askForVote(view: ClusterView, now: number): void {
    const reqId = this.nextReqId++;
    const refusingNow = this.grantor.refusingBelow;
    // From the moment we ask, we stop renewing the old primary's lease.
    this.grantor.revokeBelow(view.epoch + 1);
    if (!this.out.sendVoteRequest(view.witnessId!, view.epoch, reqId)) {
      // A timed-out request may still be answered (and acted on): only this ask's revocation is undone.
      this.grantor.restoreRefusal(refusingNow);
      return;
    }
    // This request replaces a timed-out one (a late reply to that one is ignored), so an explicit
    // refusal of it restores grants to what they were before the first unanswered request.
    this.vote = { reqId, sentAt: now, epoch: view.epoch, refuseBefore: this.vote?.refuseBefore ?? refusingNow };
    this.nextVoteAt = now + VoteRetryMs;
  }

  /** The primary's state: step down before the lease runs out, act again once it is renewed. */
  private evaluate(): void {
    const view = this.view;
    if (!view || view.role !== 'primary' || !this.lease) {
      this.out.publish(Number.NEGATIVE_INFINITY, this.enforced);
      return;
    }
    if (!this.enforced) {
      this.acting = true;
      this.out.publish(Number.POSITIVE_INFINITY, false);
      return;
    }
    const budget = view.lease.stepDownBudgetMs;
    if (this.acting && this.lease.mustStepDown(budget)) {
      this.acting = false;
      this.out.report({ type: 'fenced', reason: 'no grant from the backup or the witness before the lease ran out' });
    } else if (!this.acting && this.lease.remainingMs() > budget) {
      this.acting = true;
      this.out.report({ type: 'lease-acquired', remainingMs: Math.round(this.lease.remainingMs()) });
    }
    this.out.publish(this.acting ? this.clock.nowMs() + this.lease.remainingMs() - budget : Number.NEGATIVE_INFINITY, true);
  }
}
