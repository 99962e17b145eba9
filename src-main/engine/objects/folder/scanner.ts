/**
 * Compares a folder on disk with its index and lists what changed: new, modified, deleted,
 * renamed (the same inode seen vanishing at one path and appearing at another), mode and
 * mtime changes, directories and symlinks. Never follows symlinks. Leaves out excluded
 * paths, our own temp files, names that are not valid UTF-8, and live SQLite databases
 * (a `-wal` or `-journal` beside them), and says so.
 */
import { lstat, readdir, readlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join } from 'node:path';
import picomatch from 'picomatch';
import type { EntryType, FolderEntry } from '../object-store.js';

/**
 * At most this many file-system calls of one scan in flight. Async fs calls share libuv's
 * small thread pool with replication's own reads, writes, renames and fsyncs; a scan that
 * queued thousands at once would hold live changes back for a second or more.
 */
const ScanConcurrency = 4;

class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.active += 1;
    try {
      return await task();
    } finally {
      this.active -= 1;
      this.waiting.shift()?.();
    }
  }
}

/** Files we write on the backup while assembling; never replicated. */
export const TempPrefix = '.understudy-tmp-';
const SqliteCompanions = ['-wal', '-journal', '-shm'];

export type Change = Omit<FolderEntry, 'seq'>;

export interface Skipped {
  path: string;
  reason: 'excluded-sqlite' | 'not-utf8' | 'unreadable';
  detail: string;
}

export interface ScanResult {
  /** In the order they must be recorded; a caller may drop some (never reorder). */
  changes: Change[];
  skipped: Skipped[];
  /** Paths seen on disk (files, dirs, symlinks) in the scanned scope. */
  seen: number;
}

interface DiskEntry {
  path: string;
  type: EntryType;
  stat: Stats;
  linkTarget: string | null;
}

export type PathFilter = (relativePath: string) => boolean;

/** A filter that is true for paths to leave out (user globs, our temp files). */
export function excludeFilter(globs: string[]): PathFilter {
  const match = globs.length > 0 ? picomatch(globs, { dot: true, basename: true }) : () => false;
  return (path) => path.split('/').at(-1)!.startsWith(TempPrefix) || match(path);
}

/**
 * Scans `scope` (relative paths; null for the whole folder) under root against `index`.
 * Each returned change is ready to be given a seq: creations and modifications first
 * (parents before children), deletions last (children before parents), so a rename's new
 * path exists before its old one is removed.
 */
export interface ScanOptions {
  /**
   * Compare as a copy, not as the original: inode numbers and (unless running as root)
   * owners differ on the backup, and mtimes there were set from the primary's.
   */
  asCopy?: boolean;
}

export async function scanFolder(root: string, index: Map<string, FolderEntry>, excluded: PathFilter, scope: string[] | null, options: ScanOptions = {}): Promise<ScanResult> {
  // Every scan, scoped or full, first proves the folder itself is there: when it vanishes,
  // the watcher reports every path deleted, and none of that may reach the backup.
  const rootStat = await lstat(root);
  if (!rootStat.isDirectory()) throw Object.assign(new Error(`${root} is not a directory`), { code: 'ENOTDIR' });
  await readdir(root);
  const disk = new Map<string, DiskEntry>();
  const skipped: Skipped[] = [];
  const roots = scope === null ? [''] : normalizeScope(scope);
  const fs = new Limiter(ScanConcurrency);
  for (const start of roots) await walk(root, start, disk, excluded, skipped, start === '', fs);

  const inScope = (path: string) => scope === null || roots.some((r) => r === '' || path === r || path.startsWith(`${r}/`));
  const now = Date.now();
  const upserts: Change[] = [];
  const vanished: FolderEntry[] = [];
  for (const entry of disk.values()) {
    const known = index.get(entry.path);
    if (known && !known.deleted && (options.asCopy ? sameAsCopy(known, entry) : sameAsIndexed(known, entry))) continue;
    upserts.push(toChange(entry, now));
  }
  for (const known of index.values()) {
    if (known.deleted || !inScope(known.path) || disk.has(known.path)) continue;
    vanished.push(known);
  }
  // A file that vanished at one path and appeared at another with the same inode, size and
  // mtime was renamed: the backup can rename its copy instead of receiving the data again.
  const byIdentity = new Map<string, FolderEntry>();
  for (const v of vanished) if (v.type === 'file') byIdentity.set(identityKey(v.ino, v.size, v.mtimeMs), v);
  for (const change of upserts) {
    if (change.type !== 'file') continue;
    const from = byIdentity.get(identityKey(change.ino, change.size, change.mtimeMs));
    if (from) {
      change.renamedFrom = from.path;
      change.hash = from.hash;
      byIdentity.delete(identityKey(change.ino, change.size, change.mtimeMs));
    }
  }
  upserts.sort((a, b) => rank(a) - rank(b) || compare(a.path, b.path));
  const deletions: Change[] = vanished
    .sort((a, b) => compare(b.path, a.path))
    .map((v) => ({ ...v, deleted: true, renamedFrom: null, changedAt: now }));
  return { changes: [...upserts, ...deletions], skipped, seen: disk.size };
}

function rank(change: Change): number {
  return change.type === 'dir' ? 0 : 1;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function identityKey(ino: number, size: number, mtimeMs: number): string {
  return `${ino}:${size}:${mtimeMs}`;
}

/** Drops scope paths inside other scope paths (the outer scan covers them). */
function normalizeScope(scope: string[]): string[] {
  const sorted = [...new Set(scope)].sort();
  return sorted.filter((path, i) => !sorted.slice(0, i).some((outer) => outer === '' || path.startsWith(`${outer}/`)));
}

function sameAsIndexed(known: FolderEntry, entry: DiskEntry): boolean {
  const s = entry.stat;
  if (known.type !== entry.type || known.mode !== (s.mode & 0o7777) || known.uid !== s.uid || known.gid !== s.gid) return false;
  // A directory's size and mtime change with its children; its children carry those changes.
  if (entry.type === 'dir') return true;
  // Sizes are recorded for files only (toChange): a symlink's lstat size is its target's length.
  const size = entry.type === 'file' ? s.size : 0;
  return known.size === size && known.mtimeMs === s.mtimeMs && known.ino === s.ino && known.linkTarget === entry.linkTarget;
}

function sameAsCopy(known: FolderEntry, entry: DiskEntry): boolean {
  const s = entry.stat;
  if (known.type !== entry.type) return false;
  if (entry.type === 'symlink') return known.linkTarget === entry.linkTarget;
  if (known.mode !== (s.mode & 0o7777)) return false;
  if (process.getuid?.() === 0 && (known.uid !== s.uid || known.gid !== s.gid)) return false;
  if (entry.type === 'dir') return true;
  return known.size === s.size && Math.abs(known.mtimeMs - s.mtimeMs) < 1;
}

function toChange(entry: DiskEntry, now: number): Change {
  const s = entry.stat;
  return {
    path: entry.path,
    type: entry.type,
    deleted: false,
    size: entry.type === 'file' ? s.size : 0,
    mode: s.mode & 0o7777,
    mtimeMs: s.mtimeMs,
    uid: s.uid,
    gid: s.gid,
    ino: s.ino,
    linkTarget: entry.linkTarget,
    hash: null,
    renamedFrom: null,
    changedAt: now,
  };
}

function typeOf(stat: Stats): EntryType | null {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'dir';
  if (stat.isSymbolicLink()) return 'symlink';
  return null; // sockets, fifos, devices: not replicated
}

/** Adds `rel` (and, for a directory, everything below it) to `disk`. */
async function walk(
  root: string,
  rel: string,
  disk: Map<string, DiskEntry>,
  excluded: PathFilter,
  skipped: Skipped[],
  isRoot: boolean,
  fs: Limiter,
  siblings: Set<string> | null = null,
): Promise<void> {
  const abs = rel === '' ? root : join(root, rel);
  let stat: Stats;
  try {
    stat = await fs.run(() => lstat(abs));
  } catch (error) {
    // A missing root is an error, never "everything was deleted": nothing may propagate.
    if (isRoot && rel === '') throw error;
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    if (isRoot) throw error;
    skipped.push({ path: rel, reason: 'unreadable', detail: (error as Error).message });
    return;
  }
  const type = typeOf(stat);
  if (isRoot && rel === '' && type !== 'dir') throw Object.assign(new Error(`${root} is not a directory`), { code: 'ENOTDIR' });
  if (!type) return;
  if (!isRoot) {
    if (excluded(rel)) return;
    if (type === 'file' && (await isLiveSqlite(abs, rel, skipped, fs, siblings))) return;
    const linkTarget = type === 'symlink' ? await fs.run(() => readlink(abs)) : null;
    disk.set(rel, { path: rel, type, stat, linkTarget });
  }
  if (type !== 'dir') return;
  let names: Buffer[];
  try {
    names = (await fs.run(() => readdir(abs, { encoding: 'buffer' }))) as Buffer[];
  } catch (error) {
    skipped.push({ path: rel || '.', reason: 'unreadable', detail: (error as Error).message });
    if (isRoot) throw error;
    return;
  }
  const batch: Promise<void>[] = [];
  const listed = new Set(names.map((raw) => raw.toString('utf8')));
  for (const raw of names) {
    const name = raw.toString('utf8');
    const child = rel === '' ? name : `${rel}/${name}`;
    if (!Buffer.from(name, 'utf8').equals(raw)) {
      skipped.push({ path: child, reason: 'not-utf8', detail: 'the file name is not valid UTF-8' });
      continue;
    }
    batch.push(walk(root, child, disk, excluded, skipped, false, fs, listed));
    if (batch.length >= 64) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
}

/** A database with a live `-wal` or `-journal` cannot be copied as bytes; the SQLite protection handles it. */
async function isLiveSqlite(abs: string, rel: string, skipped: Skipped[], fs: Limiter, siblings: Set<string> | null): Promise<boolean> {
  // With the directory's listing at hand the check costs no system call; a single path checks the disk.
  const name = abs.slice(abs.lastIndexOf('/') + 1);
  const present = (other: string) => (siblings ? Promise.resolve(siblings.has(other)) : fs.run(() => exists(abs.slice(0, abs.length - name.length) + other)));
  if (SqliteCompanions.some((suffix) => name.endsWith(suffix))) {
    if (await present(name.slice(0, name.lastIndexOf('-')))) return true;
  }
  for (const suffix of ['-wal', '-journal']) {
    if (await present(name + suffix)) {
      skipped.push({ path: rel, reason: 'excluded-sqlite', detail: `a live SQLite database (${suffix.slice(1)} beside it): protect it with 'understudy protect sqlite'` });
      return true;
    }
  }
  return false;
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
