/**
 * The versions area: before the backup deletes or overwrites anything in DEST, the old file
 * (or directory) goes here, outside DEST, so a mistake or ransomware replicated from the
 * primary can be undone. Kept 30 days by default, within a size cap; oldest go first.
 */
import { cp, link, lstat, mkdir, readdir, rename, rm, copyFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** How long versions are kept. @default 30 days */
export const DefaultVersionsKeepMs = 30 * 24 * 3600 * 1000;
/** Versions beyond this total size are removed, oldest first. @default 10 GiB */
export const DefaultVersionsMaxBytes = 10 * 1024 ** 3;

export class VersionsArea {
  constructor(readonly root: string) {}

  /** A folder for one moment, so versions of one batch stay together. */
  private slot(): string {
    return join(this.root, new Date().toISOString().replace(/[:.]/g, '-'));
  }

  /** A destination for `rel` in the current slot that nothing occupies yet. */
  private async freeDestination(rel: string): Promise<string> {
    const base = join(this.slot(), rel);
    // A directory's children may have gone aside into the same slot a moment before it.
    for (let n = 0; ; n++) {
      const candidate = n === 0 ? base : `${base}~${n}`;
      try {
        await lstat(candidate);
      } catch {
        return candidate;
      }
    }
  }

  /** Moves what is at `abs` (a file, link or directory in DEST) into the area, as `rel`. */
  async moveAside(abs: string, rel: string): Promise<string> {
    const destination = await this.freeDestination(rel);
    await mkdir(dirname(destination), { recursive: true });
    try {
      await rename(abs, destination);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      // Another file system: copy, then remove the original.
      await cp(abs, destination, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
      await rm(abs, { recursive: true, force: true });
    }
    return destination;
  }

  /** Keeps a copy of the file at `abs` that is about to be replaced (a hard link when possible). */
  async keepCopy(abs: string, rel: string): Promise<string> {
    const destination = await this.freeDestination(rel);
    await mkdir(dirname(destination), { recursive: true });
    try {
      await link(abs, destination);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EEXIST') throw error;
      await copyFile(abs, destination);
    }
    return destination;
  }

  /** Removes versions older than keepMs, then the oldest ones until the area fits maxBytes. */
  async prune(keepMs = DefaultVersionsKeepMs, maxBytes = DefaultVersionsMaxBytes): Promise<void> {
    let slots: string[];
    try {
      slots = (await readdir(this.root)).sort();
    } catch {
      return;
    }
    const cutoff = Date.now() - keepMs;
    const sizes: { slot: string; bytes: number }[] = [];
    for (const slot of slots) {
      const path = join(this.root, slot);
      if ((await stat(path)).mtimeMs < cutoff) await rm(path, { recursive: true, force: true });
      else sizes.push({ slot: path, bytes: await sizeOf(path) });
    }
    let total = sizes.reduce((sum, s) => sum + s.bytes, 0);
    for (const { slot, bytes } of sizes) {
      if (total <= maxBytes) break;
      await rm(slot, { recursive: true, force: true });
      total -= bytes;
    }
  }
}

async function sizeOf(path: string): Promise<number> {
  const info = await lstat(path);
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await readdir(path)) total += await sizeOf(join(path, name));
  return total;
}
