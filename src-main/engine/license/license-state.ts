/**
 * Where a license stands, worked out from facts alone (the verified terms, the trial's start,
 * the time, this machine's cores), so every rule is testable without a clock or a store.
 */
import type { LicenseReport, LicenseState } from '../../contract/control.js';
import type { LicenseTerms } from './license-key.js';
import { covers, describeLimit, findTier, tierFor } from './tiers.js';

export const TrialDays = 30;
export const DayMs = 86_400_000;
/** Warn this many days before a term or the trial ends. */
export const WarnDaysBefore = 7;
/** A clock further behind the latest time seen than this is reported. */
export const ClockBehindWarnMs = 10 * 60_000;
/** Nodes one license covers unless it says more: one pair. */
export const PairNodes = 2;

export interface LicenseFacts {
  /** The installed key's terms; null: none installed. */
  terms: LicenseTerms | null;
  /** Why the installed key no longer verifies, if it does not. */
  invalidReason: string | null;
  trialStartedAt: number;
  /** License time: the wall clock, never earlier than the latest time seen (see HighWaterClock). */
  nowMs: number;
  /** How far the wall clock is behind the latest time seen (0 normally). */
  clockBehindMs: number;
  cores: number;
  /** False on a witness, which needs no license. */
  counted: boolean;
}

export function evaluateLicense(facts: LicenseFacts): LicenseReport {
  const { terms, nowMs, cores } = facts;
  const needed = tierFor(cores);
  const tier = terms ? findTier(terms.tier) : undefined;
  const kind = !terms ? 'trial' : terms.expiresAt === null ? 'perpetual' : 'term';
  const expiresAt = terms ? terms.expiresAt : facts.trialStartedAt + TrialDays * DayMs;
  const daysLeft = expiresAt === null ? null : Math.max(0, Math.ceil((expiresAt - nowMs) / DayMs));
  const date = (ms: number) => new Date(ms).toISOString().slice(0, 10);

  let state: LicenseState;
  let summary: string;
  const warnings: string[] = [];
  const keepsProtecting = 'protection goes on, but new folders, databases and backups cannot be added';
  if (facts.invalidReason !== null || (terms && !tier)) {
    state = 'invalid';
    const why = facts.invalidReason ?? `it names the tier ${terms!.tier}, which this version does not know`;
    summary = `The installed license key is not valid: ${why}.`;
    warnings.push(`The installed license key is not valid (${why}): ${keepsProtecting} until a valid key is installed.`);
  } else if (expiresAt !== null && nowMs >= expiresAt) {
    state = 'expired';
    summary = terms ? `The ${terms.tier} license for ${terms.customer} expired on ${date(expiresAt)}.` : `The ${TrialDays}-day trial ended on ${date(expiresAt)}.`;
    warnings.push(`${summary.slice(0, -1)}: ${keepsProtecting} until a valid key is installed.`);
  } else if (terms && tier && !covers(tier, cores)) {
    state = 'too-small';
    summary = `The ${tier.tier} license covers machines with ${describeLimit(tier)}; this one has ${cores}.`;
    warnings.push(`This machine has ${cores} cores and the ${tier.tier} license covers ${describeLimit(tier)}: the ${needed.tier} tier (${describeLimit(needed)}) is needed; ${keepsProtecting} until then.`);
  } else if (!terms) {
    state = 'trial';
    summary = `Trial: ${daysLeft} of ${TrialDays} days left (ends ${date(expiresAt!)}); fully working.`;
  } else {
    state = 'valid';
    summary = `${terms.tier} license for ${terms.customer}: machines with ${describeLimit(tier!)}, one pair${terms.nodes > PairNodes ? ` and ${terms.nodes - PairNodes} more nodes` : ''}; ${expiresAt === null ? 'perpetual' : `valid until ${date(expiresAt)}`}.`;
  }
  if ((state === 'trial' || state === 'valid') && daysLeft !== null && daysLeft <= WarnDaysBefore) {
    warnings.push(state === 'trial' ? `The trial ends in ${daysLeft} day${daysLeft === 1 ? '' : 's'}: install a license key to keep adding protection.` : `The license expires in ${daysLeft} day${daysLeft === 1 ? '' : 's'} (${date(expiresAt!)}): ask for a renewal key.`);
  }
  if (terms?.maintenanceEndsAt != null && nowMs >= terms.maintenanceEndsAt) {
    warnings.push(`Maintenance ended on ${date(terms.maintenanceEndsAt)}: the license stays valid, but versions released after that date are not covered.`);
  }
  if (facts.clockBehindMs > ClockBehindWarnMs) {
    warnings.push(`The system clock is ${Math.round(facts.clockBehindMs / 60_000)} minutes behind the latest time this node has seen: license dates count from that time.`);
  }
  return {
    state,
    kind,
    tier: terms?.tier ?? null,
    customer: terms?.customer ?? null,
    licenseId: terms?.licenseId ?? null,
    issuedAt: terms ? new Date(terms.issuedAt).toISOString() : null,
    expiresAt: expiresAt === null ? null : new Date(expiresAt).toISOString(),
    daysLeft,
    maintenanceEndsAt: terms?.maintenanceEndsAt != null ? new Date(terms.maintenanceEndsAt).toISOString() : null,
    nodes: terms?.nodes ?? PairNodes,
    cores,
    tierNeeded: needed.tier,
    mayConfigure: state === 'trial' || state === 'valid',
    counted: facts.counted,
    summary: facts.counted ? summary : `A witness needs no license of its own (the pair's license covers the primary and the backup). ${summary}`,
    // A witness protects nothing and is never counted: nothing about the license needs its admin's attention.
    warnings: facts.counted ? warnings : [],
  };
}

/**
 * Of two verified keys, the one a node should hold: one that is still in force over one that
 * is not, then the later end (perpetual last of all), then the later issue.
 */
export function betterTerms(a: LicenseTerms, b: LicenseTerms, nowMs: number): LicenseTerms {
  const inForce = (t: LicenseTerms) => t.expiresAt === null || t.expiresAt > nowMs;
  if (inForce(a) !== inForce(b)) return inForce(a) ? a : b;
  const end = (t: LicenseTerms) => t.expiresAt ?? Number.POSITIVE_INFINITY;
  if (end(a) !== end(b)) return end(a) > end(b) ? a : b;
  return a.issuedAt >= b.issuedAt ? a : b;
}
