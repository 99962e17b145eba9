/**
 * Protected objects and the folder index, in the node's store. On the primary the index is
 * the journal: one row per path, and a change gives the row the next sequence number, so
 * repeated changes to a path collapse into one pending change and the journal is bounded by
 * the number of paths. On the backup the same table records what was applied.
 */
import type Database from 'better-sqlite3';

export type ObjectSide = 'source' | 'replica';
export type EntryType = 'file' | 'dir' | 'symlink';

export type ObjectKind = 'folder' | 'sqlite';

export interface ObjectRecord {
  id: string;
  kind: ObjectKind;
  side: ObjectSide;
  source: string;
  target: string;
  excludes: string[];
  createdAt: string;
  lastSeq: number;
  ackedSeq: number;
  /** The last seq of the initial scan; initial sync is done once the backup acknowledged it. */
  initialSeq: number | null;
  initialDone: boolean;
  /** Paused by the admin: changes are captured but not sent (primary only; kept across restarts). */
  paused: boolean;
}

export interface FolderEntry {
  path: string;
  type: EntryType;
  deleted: boolean;
  size: number;
  mode: number;
  mtimeMs: number;
  uid: number;
  gid: number;
  ino: number;
  linkTarget: string | null;
  /** SHA-256 of the content (hex), once known. */
  hash: string | null;
  /** The path this file was renamed from, when the scan saw the same inode vanish there. */
  renamedFrom: string | null;
  seq: number;
  /** Wall time (ms) when the change was seen; lag is measured from it. */
  changedAt: number;
}

/** A new object's record: nothing sent, applied or acknowledged yet. */
export function newFolderObject(fields: Pick<ObjectRecord, 'id' | 'side' | 'source' | 'target' | 'excludes'>): ObjectRecord {
  return newObject('folder', fields);
}

export function newObject(kind: ObjectKind, fields: Pick<ObjectRecord, 'id' | 'side' | 'source' | 'target' | 'excludes'>): ObjectRecord {
  return { ...fields, kind, createdAt: new Date().toISOString(), lastSeq: 0, ackedSeq: 0, initialSeq: null, initialDone: false, paused: false };
}

interface ObjectRow {
  id: string;
  kind: ObjectKind;
  side: ObjectSide;
  source: string;
  target: string;
  excludes: string;
  created_at: string;
  last_seq: number;
  acked_seq: number;
  initial_seq: number | null;
  initial_done: number;
  paused: number;
}

interface EntryRow {
  path: string;
  type: EntryType;
  deleted: number;
  size: number;
  mode: number;
  mtime_ms: number;
  uid: number;
  gid: number;
  ino: number;
  link_target: string | null;
  hash: string | null;
  renamed_from: string | null;
  seq: number;
  changed_at: number;
}

export class ObjectStore {
  constructor(private readonly db: Database.Database) {}

  listObjects(): ObjectRecord[] {
    return (this.db.prepare('SELECT * FROM objects ORDER BY created_at').all() as ObjectRow[]).map(toObject);
  }

  getObject(id: string): ObjectRecord | null {
    const row = this.db.prepare('SELECT * FROM objects WHERE id = ?').get(id) as ObjectRow | undefined;
    return row ? toObject(row) : null;
  }

  addObject(object: ObjectRecord): void {
    this.db
      .prepare(
        `INSERT INTO objects(id, kind, side, source, target, excludes, created_at, last_seq, acked_seq, initial_seq, initial_done)
         VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(object.id, object.kind, object.side, object.source, object.target, JSON.stringify(object.excludes), object.createdAt, object.lastSeq, object.ackedSeq, object.initialSeq, object.initialDone ? 1 : 0);
  }

  /** Removes an object and its index; the files themselves are left where they are. */
  removeObject(id: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM folder_entries WHERE object_id = ?').run(id);
      this.db.prepare('DELETE FROM objects WHERE id = ?').run(id);
    })();
  }

  /**
   * The roles swapped: the object's side flips and source and target trade places (the
   * source is always the path on the primary). A new source starts in sync at its last seq:
   * a switchover drained everything before handing over.
   */
  reverse(id: string): void {
    this.db
      .prepare(
        `UPDATE objects SET side = CASE side WHEN 'source' THEN 'replica' ELSE 'source' END, source = target, target = source,
           acked_seq = last_seq, initial_seq = last_seq, initial_done = 1, paused = 0 WHERE id = ?`,
      )
      .run(id);
  }

  /** The last seq (for a database: transaction id) recorded; never goes backwards. */
  setLastSeq(id: string, seq: number): void {
    this.db.prepare('UPDATE objects SET last_seq = ? WHERE id = ? AND last_seq < ?').run(seq, id, seq);
  }

  setAcked(id: string, seq: number): void {
    this.db.prepare('UPDATE objects SET acked_seq = ? WHERE id = ? AND acked_seq < ?').run(seq, id, seq);
  }

  /** The backup says it holds less than it had acknowledged (it started over after a divergence): believe it. */
  lowerAcked(id: string, seq: number): void {
    this.db.prepare('UPDATE objects SET acked_seq = ? WHERE id = ? AND acked_seq > ?').run(seq, id, seq);
  }

  /**
   * A deposed primary's folder, once its unacknowledged changes were set aside: their index
   * rows go, and replication starts over from the beginning (the new primary's journal numbers
   * its changes from its own fork point, so no position of ours means anything to it).
   */
  forgetAfter(id: string, seq: number): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM folder_entries WHERE object_id = ? AND seq > ?').run(id, seq);
      this.db.prepare('UPDATE objects SET last_seq = 0 WHERE id = ?').run(id);
    })();
  }

  /** Pauses or resumes sending an object's changes (`understudy pause` / `resume`). */
  setPaused(id: string, paused: boolean): void {
    this.db.prepare('UPDATE objects SET paused = ? WHERE id = ?').run(paused ? 1 : 0, id);
  }

  setInitial(id: string, fields: { initialSeq?: number; initialDone?: boolean }): void {
    if (fields.initialSeq !== undefined) this.db.prepare('UPDATE objects SET initial_seq = ? WHERE id = ?').run(fields.initialSeq, id);
    if (fields.initialDone !== undefined) this.db.prepare('UPDATE objects SET initial_done = ? WHERE id = ?').run(fields.initialDone ? 1 : 0, id);
  }

  /** All index rows of an object, by path. */
  entries(objectId: string): Map<string, FolderEntry> {
    const rows = this.db.prepare('SELECT * FROM folder_entries WHERE object_id = ?').all(objectId) as EntryRow[];
    return new Map(rows.map((row) => [row.path, toEntry(row)]));
  }

  entry(objectId: string, path: string): FolderEntry | null {
    const row = this.db.prepare('SELECT * FROM folder_entries WHERE object_id = ? AND path = ?').get(objectId, path) as EntryRow | undefined;
    return row ? toEntry(row) : null;
  }

  /** Whether a change to path was recorded at or after `since` (wall ms). */
  observedSince(objectId: string, path: string, since: number): boolean {
    return Boolean(this.db.prepare('SELECT 1 FROM folder_entries WHERE object_id = ? AND path = ? AND changed_at >= ?').get(objectId, path, since));
  }

  /** Changes after seq, oldest first. */
  changesAfter(objectId: string, seq: number, limit: number): FolderEntry[] {
    const rows = this.db
      .prepare('SELECT * FROM folder_entries WHERE object_id = ? AND seq > ? ORDER BY seq LIMIT ?')
      .all(objectId, seq, limit) as EntryRow[];
    return rows.map(toEntry);
  }

  /** Files (not deleted) with seq <= upTo, and how many of them, and their bytes, have seq <= done. */
  initialProgress(objectId: string, upTo: number, done: number): { files: number; bytes: number; filesDone: number; bytesDone: number } {
    const row = this.db
      .prepare(
        `SELECT COUNT(*) AS files, COALESCE(SUM(size), 0) AS bytes,
                COALESCE(SUM(seq <= @done), 0) AS filesDone, COALESCE(SUM(CASE WHEN seq <= @done THEN size ELSE 0 END), 0) AS bytesDone
         FROM folder_entries WHERE object_id = @objectId AND deleted = 0 AND seq <= @upTo`,
      )
      .get({ objectId, upTo, done }) as { files: number; bytes: number; filesDone: number; bytesDone: number };
    return row;
  }

  /** How many changes after seq (up to upTo, when given), and when the oldest of them was seen. */
  pendingAfter(objectId: string, seq: number, upTo = Number.MAX_SAFE_INTEGER): { count: number; oldestChangedAt: number | null } {
    const row = this.db
      .prepare('SELECT COUNT(*) AS count, MIN(changed_at) AS oldest FROM folder_entries WHERE object_id = ? AND seq > ? AND seq <= ?')
      .get(objectId, seq, upTo) as { count: number; oldest: number | null };
    return { count: row.count, oldestChangedAt: row.oldest };
  }

  /**
   * The changes with after < seq <= upTo (what one acknowledgement covers) and the bytes of the
   * files among them as they are now. Read before pruneAckedTombstones, which drops the deletions.
   */
  changeVolume(objectId: string, after: number, upTo: number): { changes: number; bytes: number } {
    return this.db
      .prepare(
        `SELECT COUNT(*) AS changes, COALESCE(SUM(CASE WHEN type = 'file' AND deleted = 0 THEN size ELSE 0 END), 0) AS bytes
         FROM folder_entries WHERE object_id = ? AND seq > ? AND seq <= ?`,
      )
      .get(objectId, after, upTo) as { changes: number; bytes: number };
  }

  /** The paths changed after `seq` (not acknowledged by the backup), with whether each was a deletion. */
  changedAfter(objectId: string, seq: number): { path: string; type: string; deleted: boolean }[] {
    const rows = this.db
      .prepare('SELECT path, type, deleted FROM folder_entries WHERE object_id = ? AND seq > ? ORDER BY seq')
      .all(objectId, seq) as { path: string; type: string; deleted: number }[];
    return rows.map((row) => ({ path: row.path, type: row.type, deleted: row.deleted === 1 }));
  }

  /**
   * Records changes on the primary: each entry gets the next seq, in the order given, in one
   * transaction with the object's counter. Returns the entries with their seqs.
   */
  recordChanges(objectId: string, changes: Omit<FolderEntry, 'seq'>[]): FolderEntry[] {
    if (changes.length === 0) return [];
    const upsert = this.db.prepare(
      `INSERT INTO folder_entries(object_id, path, type, deleted, size, mode, mtime_ms, uid, gid, ino, link_target, hash, renamed_from, seq, changed_at)
       VALUES(@objectId, @path, @type, @deleted, @size, @mode, @mtimeMs, @uid, @gid, @ino, @linkTarget, @hash, @renamedFrom, @seq, @changedAt)
       ON CONFLICT(object_id, path) DO UPDATE SET type = excluded.type, deleted = excluded.deleted, size = excluded.size,
         mode = excluded.mode, mtime_ms = excluded.mtime_ms, uid = excluded.uid, gid = excluded.gid, ino = excluded.ino,
         link_target = excluded.link_target, hash = excluded.hash, renamed_from = excluded.renamed_from,
         seq = excluded.seq, changed_at = excluded.changed_at`,
    );
    return this.db.transaction(() => {
      const { last_seq: last } = this.db.prepare('SELECT last_seq FROM objects WHERE id = ?').get(objectId) as { last_seq: number };
      let seq = last;
      const out: FolderEntry[] = [];
      for (const change of changes) {
        seq += 1;
        const entry = { ...change, seq };
        upsert.run({ ...entry, objectId, deleted: entry.deleted ? 1 : 0 });
        out.push(entry);
      }
      this.db.prepare('UPDATE objects SET last_seq = ? WHERE id = ?').run(seq, objectId);
      return out;
    })();
  }

  /**
   * Records what the backup applied: the rows as they are now, and the object's applied seq,
   * in one transaction, so a restart resumes exactly after the last durable apply.
   */
  recordApplied(objectId: string, entries: FolderEntry[], appliedSeq: number): void {
    const upsert = this.db.prepare(
      `INSERT OR REPLACE INTO folder_entries(object_id, path, type, deleted, size, mode, mtime_ms, uid, gid, ino, link_target, hash, renamed_from, seq, changed_at)
       VALUES(@objectId, @path, @type, @deleted, @size, @mode, @mtimeMs, @uid, @gid, @ino, @linkTarget, @hash, @renamedFrom, @seq, @changedAt)`,
    );
    const remove = this.db.prepare('DELETE FROM folder_entries WHERE object_id = ? AND path = ?');
    this.db.transaction(() => {
      for (const entry of entries) {
        if (entry.deleted) remove.run(objectId, entry.path);
        else upsert.run({ ...entry, objectId, deleted: 0 });
      }
      this.db.prepare('UPDATE objects SET last_seq = MAX(last_seq, ?) WHERE id = ?').run(appliedSeq, objectId);
    })();
  }

  /** Tombstones the backup has acknowledged are no longer needed. */
  pruneAckedTombstones(objectId: string, ackedSeq: number): void {
    this.db.prepare('DELETE FROM folder_entries WHERE object_id = ? AND deleted = 1 AND seq <= ?').run(objectId, ackedSeq);
  }
}

function toObject(row: ObjectRow): ObjectRecord {
  return {
    id: row.id,
    kind: row.kind,
    side: row.side,
    source: row.source,
    target: row.target,
    excludes: JSON.parse(row.excludes) as string[],
    createdAt: row.created_at,
    lastSeq: row.last_seq,
    ackedSeq: row.acked_seq,
    initialSeq: row.initial_seq,
    initialDone: row.initial_done === 1,
    paused: row.paused === 1,
  };
}

function toEntry(row: EntryRow): FolderEntry {
  return {
    path: row.path,
    type: row.type,
    deleted: row.deleted === 1,
    size: row.size,
    mode: row.mode,
    mtimeMs: row.mtime_ms,
    uid: row.uid,
    gid: row.gid,
    ino: row.ino,
    linkTarget: row.link_target,
    hash: row.hash,
    renamedFrom: row.renamed_from,
    seq: row.seq,
    changedAt: row.changed_at,
  };
}
