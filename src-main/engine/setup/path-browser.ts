/**
 * The engine's path browser: the wizard chooses what to protect from the primary's own disks,
 * whichever window it runs in (the desktop app, or a browser on another machine through the
 * web console). It lists names, kinds and sizes, never contents; a file counts as a database
 * when it starts with SQLite's 16-byte header.
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { lstat, opendir, readdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, parse, resolve, sep } from 'node:path';
import type { BrowseEntry, BrowseListing, MeasureResult } from '../../contract/control.js';
import { UnderstudyError } from '../errors.js';

/** More than this in one folder is cut (sorted by name first); nobody picks from 5,000 names. */
export const MaxEntries = 1000;
/** A folder's measurement stops after this many entries or this long; the result says so. */
const MeasureLimit = { entries: 500_000, ms: 5_000 };
const SqliteHeader = Buffer.from('SQLite format 3\0', 'latin1');

export interface ProtectedPath {
  id: string;
  source: string;
}

export async function browse(pathText: string | undefined, protectedPaths: ProtectedPath[]): Promise<BrowseListing> {
  const path = checkedPath(pathText ?? homedir());
  const info = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    throw new UnderstudyError('usage', `cannot open ${path}: ${error.code === 'ENOENT' ? 'it does not exist' : (error.code ?? error.message)}`, { hint: 'choose another folder' });
  });
  if (!info.isDirectory()) throw new UnderstudyError('usage', `${path} is not a folder`, { hint: 'browse its folder and pick it from the list' });
  const dirents = await readdir(path, { withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    throw new UnderstudyError('usage', `cannot list ${path}: ${error.code ?? error.message}`, { hint: 'the engine runs as a user that may not read it; choose another folder or grant access' });
  });
  // Symbolic links and devices are left out: protecting one would protect somewhere else.
  const listed = dirents
    .filter((d) => d.isDirectory() || d.isFile())
    .sort((a, b) => Number(b.isDirectory()) - Number(a.isDirectory()) || a.name.localeCompare(b.name));
  const entries: BrowseEntry[] = [];
  for (const dirent of listed.slice(0, MaxEntries)) {
    const full = join(path, dirent.name);
    const protectedBy = protectedPaths.find((p) => full === p.source || full.startsWith(p.source + sep))?.id ?? null;
    if (dirent.isDirectory()) {
      entries.push({ name: dirent.name, path: full, kind: 'folder', bytes: null, protectedBy });
      continue;
    }
    const size = await lstat(full).then((s) => s.size, () => null);
    entries.push({ name: dirent.name, path: full, kind: size !== null && size >= 512 && isSqlite(full) ? 'database' : 'file', bytes: size, protectedBy });
  }
  const parent = dirname(path);
  return { path, parent: parent === path ? null : parent, places: places(), entries, truncated: listed.length > MaxEntries };
}

export async function measure(pathText: string): Promise<MeasureResult> {
  const root = checkedPath(pathText);
  const started = Date.now();
  let bytes = 0;
  let files = 0;
  let seen = 0;
  const folders = [root];
  while (folders.length > 0) {
    if (seen >= MeasureLimit.entries || Date.now() - started > MeasureLimit.ms) return { path: root, bytes, files, complete: false };
    const folder = folders.pop()!;
    const dir = await opendir(folder).catch(() => null); // an unreadable subfolder is skipped, as replication reports it
    if (!dir) continue;
    for await (const dirent of dir) {
      seen++;
      const full = join(folder, dirent.name);
      if (dirent.isDirectory()) folders.push(full);
      else if (dirent.isFile()) {
        files++;
        bytes += await lstat(full).then((s) => s.size, () => 0);
      }
    }
  }
  return { path: root, bytes, files, complete: true };
}

function checkedPath(text: string): string {
  if (!isAbsolute(text)) throw new UnderstudyError('usage', `'${text}' is not an absolute path`, { hint: 'give the full path, starting at a root such as / or C:\\' });
  return resolve(text);
}

function isSqlite(path: string): boolean {
  let fd: number | null = null;
  try {
    fd = openSync(path, 'r');
    const head = Buffer.alloc(SqliteHeader.length);
    return readSync(fd, head, 0, head.length, 0) === head.length && head.equals(SqliteHeader);
  } catch {
    return false;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

function places(): { label: string; path: string }[] {
  const list = [{ label: 'Home', path: homedir() }];
  if (process.platform === 'win32') {
    for (const letter of 'CDEFGHIJKLMNOPQRSTUVWXYZ') if (existsSync(`${letter}:\\`)) list.push({ label: `${letter}:`, path: `${letter}:\\` });
  } else {
    list.push({ label: 'Computer', path: parse(homedir()).root });
  }
  return list;
}
