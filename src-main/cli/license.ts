/**
 * `understudy license issue|install|show`. Install and show go through the running node (which
 * passes a new key to its peer); with the node stopped they work on its store directly.
 */
import { readFileSync } from 'node:fs';
import type { LicenseReport, LicenseView } from '../contract/control.js';
import { isUnderstudyError, UnderstudyError } from '../engine/errors.js';
import { checkHome, explainFsError, HomeLock } from '../engine/home.js';
import { licenseWallClock } from '../engine/license/license-clock.js';
import { issueKey } from '../engine/license/license-key.js';
import { DayMs, PairNodes } from '../engine/license/license-state.js';
import { Licensing } from '../engine/license/licensing.js';
import { describeLimit, findTier, Tiers } from '../engine/license/tiers.js';
import { Store } from '../engine/store/store.js';
import { homeFrom, parse, requireOption, UsageError } from './args.js';
import { call } from './call.js';

export async function license(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case 'issue':
      return issue(rest);
    case 'install':
      return install(rest);
    case 'show':
      return show(rest);
    default:
      throw new UsageError("license: 'license install KEY', 'license show' or 'license issue ...'");
  }
}

function wholeNumber(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`license issue: --${name} must be a whole number from ${min} to ${max} (got '${text}')`);
  return n;
}

async function issue(argv: string[]): Promise<number> {
  const { values } = parse('license issue', argv, {
    tier: { type: 'string' },
    customer: { type: 'string' },
    days: { type: 'string' },
    perpetual: { type: 'boolean' },
    'maintenance-days': { type: 'string' },
    nodes: { type: 'string' },
    key: { type: 'string' },
  });
  const tierName = requireOption('license issue', 'tier', values.tier);
  const tier = findTier(tierName);
  if (!tier) throw new UsageError(`license issue: --tier '${tierName}' is not a tier (${Tiers.map((t) => t.tier).join(', ')})`);
  const customer = requireOption('license issue', 'customer', values.customer).trim();
  if (customer.length === 0 || customer.length > 100) throw new UsageError('license issue: --customer must be 1 to 100 characters');
  const days = wholeNumber('days', values.days, 1, 3650);
  const maintenanceDays = wholeNumber('maintenance-days', values['maintenance-days'], 1, 3650);
  if ((days === undefined) === !values.perpetual) throw new UsageError('license issue: give either --days N or --perpetual --maintenance-days N');
  if (values.perpetual && maintenanceDays === undefined) throw new UsageError('license issue: --perpetual needs --maintenance-days N (how long updates are covered)');
  if (!values.perpetual && maintenanceDays !== undefined) throw new UsageError('license issue: --maintenance-days goes with --perpetual (a term license covers updates for its term)');
  const nodes = wholeNumber('nodes', values.nodes, PairNodes, 64) ?? PairNodes;
  const keyPath = requireOption('license issue', 'key', values.key);
  let pem: string;
  try {
    pem = readFileSync(keyPath, 'utf8');
  } catch (error) {
    throw new UnderstudyError('license-invalid', `cannot read the vendor key ${keyPath}: ${explainFsError(error)}`, { hint: 'give the Ed25519 private key (.pem) licenses are signed with' });
  }
  const issuedAt = licenseWallClock()();
  const key = issueKey(pem, {
    customer,
    tier: tier.tier,
    nodes,
    issuedAt,
    expiresAt: days === undefined ? null : issuedAt + days * DayMs,
    maintenanceEndsAt: maintenanceDays === undefined ? null : issuedAt + maintenanceDays * DayMs,
  });
  if (values.json) console.log(JSON.stringify({ key, tier: tier.tier, customer, nodes, days: days ?? null, maintenanceDays: maintenanceDays ?? null }));
  else {
    const term = days === undefined ? `perpetual, maintenance for ${maintenanceDays} days` : `${days} days`;
    console.log(`${tier.tier} license for ${customer}: machines with ${describeLimit(tier)}, ${nodes} nodes, ${term}.`);
    console.log(key);
  }
  return 0;
}

async function install(argv: string[]): Promise<number> {
  const { values, positionals } = parse('license install', argv, {}, true);
  if (positionals.length === 0) throw new UsageError('license install: give the key (or - to read it from standard input)');
  // A pasted key may arrive split over several arguments or lines: its parts are joined.
  const key = positionals.length === 1 && positionals[0] === '-' ? readFileSync(0, 'utf8') : positionals.join('');
  const home = homeFrom(values);
  let result;
  try {
    result = await call(home, 'license:install', { key });
  } catch (error) {
    if (!isUnderstudyError(error) || error.code !== 'not-running') throw error;
    result = offline(home, false, (licensing, store) => {
      const installed = licensing.install(key);
      if (installed.changed) store.addEvent(new Date().toISOString(), 'license.installed', `license ${installed.license.licenseId} installed while the node was stopped: ${installed.license.summary}`, { source: 'admin' });
      return installed;
    });
  }
  if (values.json) console.log(JSON.stringify(result));
  else {
    console.log(result.changed ? `Installed. ${result.license.summary}` : `This key is installed already. ${result.license.summary}`);
    console.log('One license covers both nodes of the pair: the key passes to the other node by itself.');
    for (const warning of result.license.warnings) console.log(`Warning: ${warning}`);
  }
  return 0;
}

async function show(argv: string[]): Promise<number> {
  const { values } = parse('license show', argv, {});
  const home = homeFrom(values);
  let view: LicenseView;
  try {
    view = await call(home, 'license:show', {});
  } catch (error) {
    if (!isUnderstudyError(error) || error.code !== 'not-running') throw error;
    view = offline(home, true, (licensing) => licensing.view());
  }
  console.log(values.json ? JSON.stringify({ ...view.license, tiers: view.tiers }) : formatLicense(view.license));
  return 0;
}

/** Works on the store of a node that is not running (holding its lock, so it cannot start meanwhile). */
function offline<T>(home: string, readonly: boolean, work: (licensing: Licensing, store: Store) => T): T {
  checkHome(home);
  const lock = readonly ? null : HomeLock.acquire(home);
  const store = Store.open(home, { readonly });
  try {
    return work(new Licensing({ store, writable: !readonly, counted: () => store.nodeSettings().role !== 'witness' }), store);
  } finally {
    store.close();
    lock?.release();
  }
}

export function formatLicense(license: LicenseReport): string {
  const tier = license.tier ? findTier(license.tier) : undefined;
  const lines = [`License   ${license.state}: ${license.summary}`];
  if (license.customer) lines.push(`Customer  ${license.customer} (license ${license.licenseId}, issued ${license.issuedAt?.slice(0, 10)})`);
  lines.push(`Machine   ${license.cores} cores: needs ${license.tierNeeded}${tier ? `; the key is ${tier.tier} (${describeLimit(tier)})` : ''}`);
  if (license.expiresAt) lines.push(`${license.kind === 'trial' ? 'Trial end' : 'Expires  '} ${license.expiresAt.slice(0, 10)} (${license.daysLeft} days left)`);
  else lines.push(`Expires   never (perpetual)${license.maintenanceEndsAt ? `; updates covered until ${license.maintenanceEndsAt.slice(0, 10)}` : ''}`);
  lines.push(license.counted ? `Covers    this pair: one license covers both nodes${license.nodes > PairNodes ? ` and ${license.nodes - PairNodes} more` : ''}; a witness needs none` : 'Covers    nothing to cover: a witness needs no license');
  lines.push(`Changes   ${license.mayConfigure ? 'new folders, databases and backups can be added' : 'held back (protection itself goes on): install a valid key to add folders, databases or backups'}`);
  for (const warning of license.warnings) lines.push(`Warning   ${warning}`);
  return lines.join('\n');
}
