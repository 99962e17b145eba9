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
];
