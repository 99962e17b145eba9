/**
 * A node's license: the installed key, the trial, and the one rule of enforcement — a license
 * that is not in order holds back new configuration, never protection. Replication, heartbeats,
 * failover and switchover never ask this class anything.
 */
import type { KeyObject } from 'node:crypto';
import type { LicenseInstallResult, LicenseReport, LicenseView } from '../../contract/control.js';
import { UnderstudyError } from '../errors.js';
import type { Store } from '../store/store.js';
import { HighWaterClock, licenseWallClock, type WallClock } from './license-clock.js';
import { normalizeKey, readKey, type LicenseTerms } from './license-key.js';
import { betterTerms, evaluateLicense } from './license-state.js';
import { findTier, machineCores, Tiers } from './tiers.js';
import { trustedVendorKeys } from './vendor-keys.js';

const Settings = {
  key: 'license.key',
  previousKey: 'license.previousKey',
  trialStartedAt: 'license.trialStartedAt',
  highWater: 'license.highWaterMs',
} as const;

export interface LicensingOptions {
  store: Store;
  /** False where the store is open read-only (`license show` while the node is stopped). */
  writable: boolean;
  /** Whether this node counts (a witness does not). */
  counted: () => boolean;
  env?: NodeJS.ProcessEnv;
  wall?: WallClock;
  cores?: number;
  trusted?: ReadonlyMap<string, KeyObject>;
}

export class Licensing {
  private readonly clock: HighWaterClock;
  private readonly trusted: ReadonlyMap<string, KeyObject>;
  private readonly cores: number;

  constructor(private readonly options: LicensingOptions) {
    const env = options.env ?? process.env;
    const { store } = options;
    this.trusted = options.trusted ?? trustedVendorKeys(env);
    this.cores = options.cores ?? machineCores(env);
    this.clock = new HighWaterClock(
      options.wall ?? licenseWallClock(env),
      () => store.getSetting<number>(Settings.highWater),
      options.writable ? (ms) => store.setSetting(Settings.highWater, ms) : null,
    );
  }

  /** The trial starts with the node's first run (a serve that got going, not one refused at start). Idempotent. */
  beginTrial(): void {
    const { store } = this.options;
    if (this.options.writable && store.getSetting(Settings.trialStartedAt) === undefined) store.setSetting(Settings.trialStartedAt, this.clock.now().nowMs);
  }

  report(): LicenseReport {
    const time = this.clock.now();
    const installed = this.installed();
    return evaluateLicense({
      terms: installed.terms,
      invalidReason: installed.invalidReason,
      trialStartedAt: this.options.store.getSetting<number>(Settings.trialStartedAt) ?? time.nowMs,
      nowMs: time.nowMs,
      clockBehindMs: time.behindMs,
      cores: this.cores,
      counted: this.options.counted(),
    });
  }

  view(): LicenseView {
    return { license: this.report(), tiers: Tiers.map((t) => ({ ...t })) };
  }

  /** The installed key's text, to pass to the peer; null when none. */
  keyText(): string | null {
    return this.installed().terms ? (this.options.store.getSetting<string>(Settings.key) ?? null) : null;
  }

  /**
   * Installs a key the admin gave. Throws one clear UnderstudyError, changing nothing, when the
   * key is not genuine, not complete, already expired or issued after this machine's time.
   */
  install(text: string): LicenseInstallResult {
    const terms = this.verify(text);
    const { nowMs } = this.clock.now();
    const date = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    if (terms.expiresAt !== null && terms.expiresAt <= nowMs) {
      throw new UnderstudyError('license-expired', `this license key expired on ${date(terms.expiresAt)}`, { hint: 'ask for a renewal key; the license in place stays as it was' });
    }
    if (terms.issuedAt > nowMs + 86_400_000) {
      throw new UnderstudyError('license-invalid', `this license key was issued on ${date(terms.issuedAt)}, after this machine's date (${date(nowMs)})`, {
        hint: "set this machine's clock right, then install the key again",
      });
    }
    const current = this.installed().terms;
    if (current?.licenseId === terms.licenseId && current.keyId === terms.keyId) return { license: this.report(), changed: false };
    this.store(text);
    return { license: this.report(), changed: true };
  }

  /**
   * A key the peer holds, offered over the link so the admin enters it once: taken when it is
   * genuine and better than the one here (see betterTerms). Returns whether it was taken.
   */
  adoptFromPeer(text: string): boolean {
    let terms: LicenseTerms;
    try {
      terms = this.verify(text);
    } catch {
      return false;
    }
    const current = this.installed().terms;
    if (current && (current.licenseId === terms.licenseId || betterTerms(current, terms, this.clock.now().nowMs) === current)) return false;
    this.store(text);
    return true;
  }

  /** Throws 'license-required' when new configuration must wait for a license; `what` names the action. */
  assertMayConfigure(what: string): void {
    const report = this.report();
    if (report.mayConfigure || !report.counted) return;
    throw new UnderstudyError('license-required', `${what} needs a license in order (${report.summary.replace(/\.$/, '')}); everything already protected stays protected`, {
      hint: 'install a key with `understudy license install KEY`',
    });
  }

  private verify(text: string): LicenseTerms {
    const terms = readKey(text, this.trusted);
    if (!findTier(terms.tier)) {
      throw new UnderstudyError('license-invalid', `the license key is for the tier ${terms.tier}, which this version does not know`, { hint: 'update Understudy, or ask for a key of a known tier' });
    }
    return terms;
  }

  private store(text: string): void {
    const { store } = this.options;
    if (!this.options.writable) throw new Error('the license store is open read-only');
    const previous = store.getSetting<string>(Settings.key);
    // The key replaced is kept: a license is something the shop paid for.
    if (previous !== undefined) store.setSetting(Settings.previousKey, previous);
    store.setSetting(Settings.key, normalizeKey(text));
  }

  private installed(): { terms: LicenseTerms | null; invalidReason: string | null } {
    const text = this.options.store.getSetting<string>(Settings.key);
    if (text === undefined) return { terms: null, invalidReason: null };
    try {
      return { terms: this.verify(text), invalidReason: null };
    } catch (error) {
      return { terms: null, invalidReason: error instanceof UnderstudyError ? error.message : String(error) };
    }
  }
}
