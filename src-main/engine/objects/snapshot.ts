/**
 * A point-in-time snapshot of the backup's copies, for a switchover rehearsal: each database
 * copied consistently (SQLite's online backup), each folder as a tree of hard links. The
 * backup replaces a file by renaming a new one into place, never by writing into it, so the
 * linked tree keeps the versions of the moment it was taken while replication goes on.
 */
import { linkSync, lstatSync, mkdirSync, readdirSync, readlinkSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { ObjectRecord } from './object-store.js';
import { TempPrefix } from './folder/scanner.js';

export interface SnapshotObject {
  id: string;
  kind: 'folder' | 'sqlite';
  /** Where the object's snapshot is. */
  path: string;
}

export async function snapshotCopies(dir: string, objects: ObjectRecord[]): Promise<SnapshotObject[]> {
  mkdirSync(dir, { recursive: true });
  const taken: SnapshotObject[] = [];
  for (const object of objects) {
    const path = join(dir, object.kind === 'sqlite' ? `${object.id}.db` : object.id);
    if (object.kind === 'sqlite') {
      const db = new Database(object.target, { readonly: true, fileMustExist: true });
      try {
        await db.backup(path);
      } finally {
        db.close();
      }
    } else linkTree(object.target, path);
    taken.push({ id: object.id, kind: object.kind, path });
  }
  return taken;
}

/** Copies a directory tree as hard links (files), new directories and new symlinks; temp files left out. */
function linkTree(from: string, to: string): void {
  mkdirSync(to, { mode: lstatSync(from).mode & 0o7777 });
  for (const entry of readdirSync(from, { withFileTypes: true })) {
    if (entry.name.startsWith(TempPrefix)) continue;
    const source = join(from, entry.name);
    const target = join(to, entry.name);
    if (entry.isDirectory()) linkTree(source, target);
    else if (entry.isSymbolicLink()) symlinkSync(readlinkSync(source), target);
    else if (entry.isFile()) linkSync(source, target);
  }
}
