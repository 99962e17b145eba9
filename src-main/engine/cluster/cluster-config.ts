/**
 * The pair's timing settings (`understudy config set KEY VALUE`): a profile for the kind of
 * network, and the values it implies unless set one by one. Checked together, because the
 * lease must outlast the stop hook's budget plus a beat, or a primary could not step down in
 * time (shared/docs/failover-notes.md).
 */
import { UnderstudyError } from '../errors.js';
import type { LeaseSettings } from './lease.js';

export type Profile = 'lan' | 'wan';

export interface ClusterConfig {
  profile: Profile;
  /** Beat interval; takes effect at the node's next start. */
  heartbeatMs: number;
  /** L: how long one grant lets the primary act. */
  leaseMs: number;
  /** The stop hook's time limit when a primary steps down because its lease runs out. */
  stopBudgetMs: number;
  /** The backup does not promote by itself when it was further behind than this (null: no limit). */
  maxPromoteLagMs: number | null;
}

const ProfileDefaults: Record<Profile, Omit<ClusterConfig, 'profile' | 'maxPromoteLagMs'>> = {
  lan: { heartbeatMs: 200, leaseMs: 1500, stopBudgetMs: 500 },
  wan: { heartbeatMs: 1000, leaseMs: 8000, stopBudgetMs: 3000 },
};

export const ConfigKeys = ['profile', 'heartbeatMs', 'leaseMs', 'stopBudgetMs', 'maxPromoteLagMs'] as const;
export type ConfigKey = (typeof ConfigKeys)[number];

/** The largest relative clock-rate difference allowed between two machines. */
export const DriftRatio = 0.01;

/** What is stored: only the keys the admin set; the rest follows the profile. */
export type StoredConfig = Partial<ClusterConfig>;

export function resolveConfig(stored: StoredConfig | null | undefined): ClusterConfig {
  const profile = stored?.profile ?? 'lan';
  return { profile, ...ProfileDefaults[profile], maxPromoteLagMs: null, ...(stored ?? {}) };
}

export function leaseSettings(config: ClusterConfig): LeaseSettings {
  // Stepping down starts early enough for the stop hook, plus one beat for the worker to notice.
  return { leaseMs: config.leaseMs, driftRatio: DriftRatio, stepDownBudgetMs: config.stopBudgetMs + config.heartbeatMs };
}

/** Applies `config set KEY VALUE` to what is stored; throws one clear line when the value or the result is wrong. */
export function setConfigValue(stored: StoredConfig | null | undefined, key: string, value: string): StoredConfig {
  const next: StoredConfig = { ...(stored ?? {}) };
  switch (key as ConfigKey) {
    case 'profile':
      if (value !== 'lan' && value !== 'wan') throw bad(key, value, "'lan' or 'wan'");
      // A new profile brings its own timings: values set one by one before are dropped.
      return { profile: value, ...(next.maxPromoteLagMs !== undefined ? { maxPromoteLagMs: next.maxPromoteLagMs } : {}) };
    case 'heartbeatMs':
      next.heartbeatMs = milliseconds(key, value, 50, 10_000);
      break;
    case 'leaseMs':
      next.leaseMs = milliseconds(key, value, 300, 120_000);
      break;
    case 'stopBudgetMs':
      next.stopBudgetMs = milliseconds(key, value, 0, 120_000);
      break;
    case 'maxPromoteLagMs':
      next.maxPromoteLagMs = value === 'none' ? null : milliseconds(key, value, 0, 86_400_000);
      break;
    default:
      throw new UnderstudyError('usage', `'${key}' is not a setting`, { hint: `settings: ${ConfigKeys.join(', ')}` });
  }
  const config = resolveConfig(next);
  const budget = leaseSettings(config).stepDownBudgetMs + config.heartbeatMs;
  if (config.leaseMs * (1 - DriftRatio) <= budget) {
    throw new UnderstudyError('usage', `leaseMs ${config.leaseMs} is too short for stopBudgetMs ${config.stopBudgetMs} and heartbeatMs ${config.heartbeatMs}: a primary could not step down in time`, {
      hint: `make leaseMs larger than ${Math.ceil(budget / (1 - DriftRatio))}, or stopBudgetMs smaller`,
    });
  }
  return next;
}

function milliseconds(key: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) throw bad(key, value, `a whole number of milliseconds from ${min} to ${max}`);
  return n;
}

function bad(key: string, value: string, expected: string): UnderstudyError {
  return new UnderstudyError('usage', `${key} '${value}' is not valid: expected ${expected}`, { hint: `understudy config set ${key} VALUE --home DIR` });
}
