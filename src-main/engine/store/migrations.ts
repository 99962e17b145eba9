/**
 * Numbered schema migrations. Migration N brings the store from user_version N-1 to N;
 * never edit one that has shipped, add the next.
 */
export const Migrations: readonly string[] = [
  // 1: settings, pinned peers, the event log
  `
  CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  CREATE TABLE peers (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL,
    key_hash   BLOB NOT NULL UNIQUE,
    cert_pem   TEXT NOT NULL,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    paired_at  TEXT NOT NULL
  );
  CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       TEXT NOT NULL,
    type     TEXT NOT NULL,
    message  TEXT NOT NULL,
    data     TEXT
  );
  `,
  // 2: protected objects and the folder index (the journal: one row per path, newest seq wins)
  `
  CREATE TABLE objects (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    side          TEXT NOT NULL,
    source        TEXT NOT NULL,
    target        TEXT NOT NULL,
    excludes      TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    acked_seq     INTEGER NOT NULL DEFAULT 0,
    initial_seq   INTEGER,
    initial_done  INTEGER NOT NULL DEFAULT 0,
    reported      TEXT
  );
  CREATE TABLE folder_entries (
    object_id     TEXT NOT NULL,
    path          TEXT NOT NULL,
    type          TEXT NOT NULL,
    deleted       INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    mode          INTEGER NOT NULL,
    mtime_ms      REAL NOT NULL,
    uid           INTEGER NOT NULL,
    gid           INTEGER NOT NULL,
    ino           INTEGER NOT NULL,
    link_target   TEXT,
    hash          TEXT,
    renamed_from  TEXT,
    seq           INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL,
    PRIMARY KEY (object_id, path)
  );
  CREATE INDEX folder_entries_by_seq ON folder_entries(object_id, seq);
  `,
  // 3: an object paused by the admin (`understudy pause`) stays paused across restarts
  `
  ALTER TABLE objects ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
  `,
];
