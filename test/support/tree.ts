/** Folder trees for replication tests: a manifest to compare, and a seeded random workload. */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface ManifestEntry {
  type: 'file' | 'dir' | 'symlink';
  size: number;
  mode: number;
  sha256: string | null;
  target: string | null;
}

/** Every path under root (files, directories, symlinks) with size, mode and sha256. */
export function manifest(root: string): Map<string, ManifestEntry> {
  const out = new Map<string, ManifestEntry>();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel ? `${rel}/${name}` : name;
      const abs = join(root, path);
      const stat = lstatSync(abs);
      const mode = stat.mode & 0o7777;
      if (stat.isSymbolicLink()) out.set(path, { type: 'symlink', size: 0, mode: 0, sha256: null, target: readlinkSync(abs) });
      else if (stat.isDirectory()) {
        out.set(path, { type: 'dir', size: 0, mode, sha256: null, target: null });
        walk(path);
      } else out.set(path, { type: 'file', size: stat.size, mode, sha256: createHash('sha256').update(readFileSync(abs)).digest('hex'), target: null });
    }
  };
  walk('');
  return out;
}

/** Temp files Understudy's backup writes while assembling, anywhere under root (none may be left behind). */
export function findTemps(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.name.startsWith('.understudy-tmp-')) found.push(join(dir, entry.name));
      else if (entry.isDirectory()) walk(join(dir, entry.name));
    }
  };
  walk(root);
  return found;
}

/** The differences between two manifests, as lines for an assertion message (empty: identical). */
export function manifestDiff(expected: Map<string, ManifestEntry>, actual: Map<string, ManifestEntry>): string[] {
  const lines: string[] = [];
  for (const [path, want] of expected) {
    const got = actual.get(path);
    if (!got) lines.push(`missing: ${path}`);
    else if (JSON.stringify(got) !== JSON.stringify(want)) lines.push(`differs: ${path} want ${JSON.stringify(want)} got ${JSON.stringify(got)}`);
  }
  for (const path of actual.keys()) if (!expected.has(path)) lines.push(`extra: ${path}`);
  return lines;
}
