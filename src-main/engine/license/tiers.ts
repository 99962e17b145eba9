/**
 * The tier table (assets/licensing/tiers.json, the one place tiers and prices are defined):
 * which tier a machine needs, by its logical CPU cores.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import * as v from 'valibot';

const TierSchema = v.object({
  tier: v.pipe(v.string(), v.regex(/^P\d\d$/)),
  /** The largest machine the tier covers, in logical cores; null: no limit. */
  maxCores: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1))),
  priceUsd: v.pipe(v.number(), v.integer(), v.minValue(0)),
});
export type Tier = v.InferOutput<typeof TierSchema>;

const TableSchema = v.object({ comment: v.optional(v.string()), tiers: v.pipe(v.array(TierSchema), v.minLength(1)) });

/** Where the table lives, from dist/src-main/engine/license/ (and the same inside a packaged app). */
const TablePath = new URL('../../../../assets/licensing/tiers.json', import.meta.url);

function loadTiers(): readonly Tier[] {
  const table = v.parse(TableSchema, JSON.parse(readFileSync(TablePath, 'utf8')));
  // Smallest first, and only the last may be unlimited: tierFor() takes the first that fits.
  const tiers = [...table.tiers].sort((a, b) => (a.maxCores ?? Infinity) - (b.maxCores ?? Infinity));
  if (tiers.slice(0, -1).some((t) => t.maxCores === null)) throw new Error('tiers.json: only the largest tier may be unlimited');
  return tiers;
}

export const Tiers: readonly Tier[] = loadTiers();

export function findTier(name: string): Tier | undefined {
  return Tiers.find((t) => t.tier === name.toUpperCase());
}

/** The smallest tier that covers a machine with this many cores. */
export function tierFor(cores: number): Tier {
  return Tiers.find((t) => t.maxCores === null || cores <= t.maxCores) ?? Tiers.at(-1)!;
}

export function covers(tier: Tier, cores: number): boolean {
  return tier.maxCores === null || cores <= tier.maxCores;
}

/** "up to 8 cores" / "any number of cores", for people. */
export function describeLimit(tier: Tier): string {
  return tier.maxCores === null ? 'any number of cores' : `up to ${tier.maxCores} cores`;
}

/**
 * This machine's logical cores as the OS reports them. UNDERSTUDY_CORES overrides it only in
 * development (UNDERSTUDY_DEV=1), so tests can play a bigger machine.
 */
export function machineCores(env: NodeJS.ProcessEnv = process.env): number {
  const override = Number(env.UNDERSTUDY_CORES);
  if (env.UNDERSTUDY_DEV === '1' && Number.isInteger(override) && override > 0) return override;
  return availableParallelism();
}
