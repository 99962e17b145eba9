/** Small statistics and table helpers shared by the benchmarks. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function percentile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** How many values, their p50, p99 and max rounded to `digits` decimals (nulls when there are none). */
export interface Distribution {
  n: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
}

export function distribution(values: number[], digits = 1): Distribution {
  if (values.length === 0) return { n: 0, p50: null, p99: null, max: null };
  const scale = 10 ** digits;
  const round = (value: number) => Math.round(value * scale) / scale;
  return { n: values.length, p50: round(percentile(values, 0.5)), p99: round(percentile(values, 0.99)), max: round(Math.max(...values)) };
}

export function median(values: number[]): number {
  return percentile(values, 0.5);
}

export function printTable(rows: Record<string, string | number>[]): void {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]!);
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ');
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of rows) console.log(line(columns.map((c) => String(row[c] ?? ''))));
}

/** Writes bench/results/NAME.json (relative to the project root). */
export function writeResults(name: string, data: unknown): string {
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const path = `${dir}${name}.json`;
  writeFileSync(path, `${JSON.stringify(data, null, 2)}\n`);
  return path;
}
