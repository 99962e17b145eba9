/**
 * The divergence archive. A primary that learns another node took over while it was cut off
 * may have written things the new primary never received. Before its copies are brought in
 * line (which overwrites them), those writes are kept: for a folder, every file changed after
 * the last change the backup acknowledged, with a list of the deletions; for a database, a
 * consistent copy of the whole database (a page-level diff would be unreadable to an admin).
 */
import { cpSync, existsSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import type { ObjectRecord, ObjectStore } from './object-store.js';

export interface ArchivedObject {
  id: string;
  kind: string;
  source: string;
  files: number;
  deletions: number;
}

/** Archives what each source object holds beyond the backup's acknowledgement into `dir`. */
export async function archiveDivergence(dir: string, objects: ObjectRecord[], store: ObjectStore): Promise<ArchivedObject[]> {
  const archived: ArchivedObject[] = [];
  for (const object of objects) {
    const into = join(dir, object.id);
    if (object.kind === 'sqlite') {
      if (!existsSync(object.source)) continue;
      mkdirSync(into, { recursive: true });
      const db = new Database(object.source, { readonly: true, fileMustExist: true });
      try {
        await db.backup(join(into, basename(object.source)));
      } finally {
        db.close();
      }
      archived.push({ id: object.id, kind: object.kind, source: object.source, files: 1, deletions: 0 });
      continue;
    }
    const changes = store.changedAfter(object.id, object.ackedSeq);
    if (changes.length === 0) continue;
    let files = 0;
    const deleted: string[] = [];
    for (const change of changes) {
      if (change.deleted) {
        deleted.push(change.path);
        continue;
      }
      const from = join(object.source, change.path);
      const exists = existsSync(from) && !lstatSync(from).isDirectory();
      if (!exists) continue;
      const to = join(into, 'files', change.path);
      mkdirSync(join(to, '..'), { recursive: true });
      cpSync(from, to, { preserveTimestamps: true, verbatimSymlinks: true });
      files++;
    }
    mkdirSync(into, { recursive: true });
    writeFileSync(join(into, 'manifest.json'), JSON.stringify({ source: object.source, ackedSeq: object.ackedSeq, changed: changes.length, files, deleted }, null, 2));
    archived.push({ id: object.id, kind: object.kind, source: object.source, files, deletions: deleted.length });
  }
  return archived;
}
