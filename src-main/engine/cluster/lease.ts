/**
 * Leases, the rule that keeps two nodes from acting as primary at once (see
 * shared/docs/failover-notes.md for the reasoning). Pure logic over an injected clock, so
 * every timing rule is unit-tested; the heartbeat worker thread drives it.
 *
 * A grant is a promise by a grantor (backup or witness): "I will not help anyone else become
 * primary before my time r + L", r being when the request reached it. The primary sent the
 * request at its time t0 < r and may act until t0 + L·(1 − ρ) in its own clock, ρ being the
 * largest clock-rate difference allowed: its lease always ends before the promise does.
 */
import type { LeaseClock } from './lease-clock.js';

export interface LeaseSettings {
  /** L: how long a grant promises. @default 1000 ms */
  leaseMs: number;
  /** ρ: the largest relative difference between two machines' clock rates. @default 0.01 */
  driftRatio: number;
  /** The stop hook's time budget plus a margin: stepping down starts this long before the lease ends. */
  stepDownBudgetMs: number;
}

export const DefaultLeaseSettings: LeaseSettings = { leaseMs: 1000, driftRatio: 0.01, stepDownBudgetMs: 300 };

/** The primary's side: what it may do, and when it must step down. */
export class PrimaryLease {
  private readonly sent = new Map<number, { t0: number; epoch: number; leaseMs: number }>();
  private nextRequest = 1;
  private endsAt = Number.NEGATIVE_INFINITY;
  private released = false;

  constructor(
    private readonly clock: LeaseClock,
    private readonly settings: LeaseSettings,
    private epoch: number,
  ) {}

  /**
   * A renewal request is about to go out (to every grantor); returns its id. `leaseMs` is the
   * promise it asks for: a grant of this request backs only that long, even if the settings
   * change before the grant comes back.
   */
  request(leaseMs = this.settings.leaseMs): number {
    const id = this.nextRequest++;
    this.sent.set(id, { t0: this.clock.nowMs(), epoch: this.epoch, leaseMs });
    // Old requests that were never answered can be forgotten: their t0 is too early to matter.
    for (const [old, { t0 }] of this.sent) if (t0 < this.clock.nowMs() - this.settings.leaseMs) this.sent.delete(old);
    return id;
  }

  /** A grantor answered request `id` for `epoch`. One grant is enough. */
  granted(id: number, epoch: number): void {
    const request = this.sent.get(id);
    if (!request || request.epoch !== epoch || epoch !== this.epoch || this.released) return;
    this.endsAt = Math.max(this.endsAt, request.t0 + request.leaseMs * (1 - this.settings.driftRatio));
  }

  /** Whether this node may act as primary now (check before every externally visible action). */
  valid(): boolean {
    return !this.released && this.clock.nowMs() < this.endsAt;
  }

  /** Time left (ms), 0 when expired. */
  remainingMs(): number {
    return this.released ? 0 : Math.max(0, this.endsAt - this.clock.nowMs());
  }

  /** Whether stepping down must start now: the stop hook (its budget, as set now) must finish before the lease ends. */
  mustStepDown(budgetMs = this.settings.stepDownBudgetMs): boolean {
    return this.released || this.clock.nowMs() >= this.endsAt - budgetMs;
  }

  /** A switchover: the lease is given up on purpose and not renewed again. */
  release(): void {
    this.released = true;
    this.endsAt = Number.NEGATIVE_INFINITY;
  }
}

export type GrantRefusal = 'starting' | 'stale-epoch' | 'revoked';

/**
 * A grantor's side (the backup's and the witness's): promises to the primary of an epoch,
 * and the question "has my promise run out?" that a vote or a promotion must ask first.
 */
export class LeaseGrantor {
  private promiseUntil = Number.NEGATIVE_INFINITY;
  private promisedEpoch = 0;
  /** Renewals for epochs below this are refused (after we asked for, or gave, a newer epoch). */
  private refuseBelow = 0;
  private readonly readyAt: number;

  /**
   * @param startedAt when this process started (lease clock): a restarted grantor has
   *   forgotten its promises, so it waits one full lease before it grants, votes or promotes.
   */
  constructor(
    private readonly clock: LeaseClock,
    private readonly settings: Pick<LeaseSettings, 'leaseMs'>,
    startedAt: number,
  ) {
    this.readyAt = startedAt + settings.leaseMs;
  }

  /** Whether the restart wait is over. */
  ready(): boolean {
    return this.clock.nowMs() >= this.readyAt;
  }

  /** A renewal from the primary of `epoch`: promise, or say why not. */
  grant(epoch: number, durationMs = this.settings.leaseMs): { ok: true } | { ok: false; reason: GrantRefusal } {
    if (!this.ready()) return { ok: false, reason: 'starting' };
    if (epoch < this.refuseBelow) return { ok: false, reason: 'revoked' };
    if (epoch < this.promisedEpoch) return { ok: false, reason: 'stale-epoch' };
    this.promisedEpoch = epoch;
    // The promise lasts as long as the primary asked (its own leaseMs), so that nodes set up
    // with different lease lengths stay safe; it never ends earlier than one already given.
    this.promiseUntil = Math.max(this.promiseUntil, this.clock.nowMs() + durationMs);
    return { ok: true };
  }

  /** No promise of ours backs any primary any more (and the restart wait is over). */
  promiseExpired(): boolean {
    return this.ready() && this.clock.nowMs() >= this.promiseUntil;
  }

  /** The primary released its lease (switchover): our promise to it no longer binds. */
  releasedBy(epoch: number): void {
    if (epoch === this.promisedEpoch) this.promiseUntil = Number.NEGATIVE_INFINITY;
  }

  /** Renewals are refused for epochs below this. */
  get refusingBelow(): number {
    return this.refuseBelow;
  }

  /**
   * Takes back a revocation made when asking for a vote that was then explicitly refused:
   * no new epoch was given to anyone, so renewing the primary is safe again.
   */
  restoreRefusal(epoch: number): void {
    this.refuseBelow = epoch;
  }

  /** From now on, renewals for epochs below `epoch` are refused (we asked for or granted it). */
  revokeBelow(epoch: number): void {
    this.refuseBelow = Math.max(this.refuseBelow, epoch);
  }
}

/** The witness's ballot: epochs come from here, one vote per epoch, durable before answered. */
export interface BallotStore {
  /** The highest epoch this witness has granted (0: none). */
  load(): number;
  /** Records a granted epoch durably (fsync) before the vote is answered. */
  save(epoch: number, candidate: string): void;
  /** Who got the highest epoch (null: nobody, or not recorded). */
  lastCandidate?(): string | null;
}

export type VoteRefusal = 'starting' | 'primary-reachable' | 'promise-running' | 'stale-epoch';

export class WitnessBallot {
  private highest: number;
  private candidate: string | null;

  constructor(
    private readonly grantor: LeaseGrantor,
    private readonly store: BallotStore,
  ) {
    this.highest = store.load();
    this.candidate = store.lastCandidate?.() ?? null;
  }

  get highestEpoch(): number {
    return this.highest;
  }

  /**
   * A candidate (the backup) asks for the epoch after `knownEpoch`. Granted only when the
   * witness cannot reach the primary either and holds no unexpired promise to it — or when
   * the primary handed over on purpose (`handover`, a switchover). The new epoch is durable
   * before this returns; renewals for older epochs are refused from then on.
   */
  vote(candidate: string, knownEpoch: number, primaryReachable: boolean, handover = false): { ok: true; epoch: number } | { ok: false; reason: VoteRefusal } {
    if (!this.grantor.ready()) return { ok: false, reason: 'starting' };
    // The same candidate asking again from the epoch before ours never heard our answer (a lost
    // reply): it gets the epoch it was already given. No new primary comes of it.
    if (candidate === this.candidate && knownEpoch === this.highest - 1) return { ok: true, epoch: this.highest };
    if (knownEpoch < this.highest) return { ok: false, reason: 'stale-epoch' };
    if (!handover) {
      if (primaryReachable) return { ok: false, reason: 'primary-reachable' };
      if (!this.grantor.promiseExpired()) return { ok: false, reason: 'promise-running' };
    }
    const epoch = Math.max(this.highest, knownEpoch) + 1;
    this.store.save(epoch, candidate);
    this.highest = epoch;
    this.candidate = candidate;
    this.grantor.revokeBelow(epoch);
    return { ok: true, epoch };
  }
}
