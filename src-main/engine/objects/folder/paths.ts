/**
 * Where the backup may write: only inside DEST, only through real directories. A path from
 * the wire with `..`, an absolute path, an empty or NUL component is refused; every existing
 * component of the parent path must be a directory, never a symlink, so a link planted in
 * DEST cannot lead a write outside it.
 */
import { lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export class UnsafePathError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`refused path '${path}': ${reason}`);
    this.name = 'UnsafePathError';
  }
}

/** Splits a wire path into safe components, or throws UnsafePathError. */
export function safeComponents(path: string): string[] {
  if (path.startsWith('/') || /^[a-zA-Z]:/.test(path)) throw new UnsafePathError(path, 'it is absolute');
  if (path.includes('\0')) throw new UnsafePathError(path, 'it contains a NUL byte');
  const parts = path.split('/');
  for (const part of parts) {
    if (part === '' || part === '.' || part === '..') throw new UnsafePathError(path, `it has a '${part || '(empty)'}' component`);
    if (process.platform === 'win32' && part.includes('\\')) throw new UnsafePathError(path, 'it contains a backslash');
  }
  return parts;
}

/** The absolute path of a safe wire path under root. */
export function resolveInside(root: string, path: string): string {
  return join(root, ...safeComponents(path));
}

/**
 * Makes sure every parent directory of path exists under root as a real directory
 * (creating missing ones with `dirMode`), and returns the absolute path. Directories in
 * `knownDirs` were checked moments ago and are not checked again; those checked now are added.
 */
export async function ensureParents(root: string, path: string, dirMode = 0o755, knownDirs?: Set<string>): Promise<string> {
  const parts = safeComponents(path);
  let current = root;
  for (const part of parts.slice(0, -1)) {
    current = join(current, part);
    if (knownDirs?.has(current)) continue;
    let stat;
    try {
      stat = await lstat(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      try {
        await mkdir(current, { mode: dirMode });
        knownDirs?.add(current);
        continue;
      } catch (mkdirError) {
        // Another apply created it meanwhile: fine if it is a real directory (checked below).
        if ((mkdirError as NodeJS.ErrnoException).code !== 'EEXIST') throw mkdirError;
        stat = await lstat(current);
      }
    }
    if (stat.isSymbolicLink()) throw new UnsafePathError(path, `'${current}' is a symlink`);
    if (!stat.isDirectory()) throw new UnsafePathError(path, `'${current}' is not a directory`);
    knownDirs?.add(current);
  }
  return join(current, parts.at(-1)!);
}
