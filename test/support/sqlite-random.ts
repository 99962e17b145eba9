/**
 * A seeded random workload on a SQLite database, of the kinds an application does: rows
 * inserted, updated and deleted in an ordinary table and in a WITHOUT ROWID table, an FTS5
 * index fed and pruned, large blobs (overflow pages), schema changes (tables, columns,
 * indexes created and dropped), VACUUM, multi-statement transactions and rolled-back ones.
 * Runs inside the application process (test/support/sqlite-app.ts).
 */
import type Database from 'better-sqlite3';
import type { Random } from './random.js';

/** Words of the FTS5 documents; the tests query some of them. */
export const FtsWords = [
  'invoice', 'receipt', 'customer', 'supplier', 'order', 'refund', 'delivery', 'payment', 'tax', 'discount',
  'coffee', 'bread', 'flour', 'butter', 'sugar', 'cheese', 'apple', 'pear', 'lemon', 'honey',
  'monday', 'tuesday', 'friday', 'morning', 'evening', 'urgent', 'pending', 'closed', 'open', 'late',
] as const;

/** The FTS5 queries both sides must answer alike. */
export const FtsQueries = ['invoice', 'coffee OR honey', 'urgent AND late', '"bread butter"', 'tax NOT refund', 'pay*'];

const MaxVacuums = 4;

interface ExtraTable {
  name: string;
  columns: string[];
  indexes: string[];
}

type Op = (db: Database.Database, random: Random, state: WorkloadState) => string | null;

interface WorkloadState {
  extra: ExtraTable[];
  nextTable: number;
  vacuums: number;
}

function sentence(random: Random, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(random.pick(FtsWords));
  return out.join(' ');
}

/** A random existing row's key (chosen by the seeded generator, not by SQLite's random()). */
function anyId(db: Database.Database, random: Random, table: string, key = 'rowid'): number | string | undefined {
  const rows = Number(db.prepare(`SELECT count(*) FROM ${table}`).pluck().get());
  if (rows === 0) return undefined;
  return db.prepare(`SELECT ${key} FROM ${table} ORDER BY ${key} LIMIT 1 OFFSET ?`).pluck().get(random.int(0, rows - 1)) as number | string | undefined;
}

const Dml: [number, Op][] = [
  [10, (db, random) => {
    db.prepare('INSERT INTO items(name, qty, note) VALUES (?, ?, ?)').run(random.text(random.int(3, 30)), random.int(0, 1000), random.next() < 0.3 ? random.text(random.int(100, 3000)) : null);
    return 'insert item';
  }],
  [6, (db, random) => {
    const id = anyId(db, random, 'items');
    if (id === undefined) return null;
    db.prepare('UPDATE items SET qty = ?, note = ? WHERE id = ?').run(random.int(0, 1000), random.text(random.int(0, 2000)), id);
    return `update item ${id}`;
  }],
  [4, (db, random) => {
    const id = anyId(db, random, 'items');
    if (id === undefined) return null;
    const many = random.next() < 0.2;
    db.prepare(many ? 'DELETE FROM items WHERE id % 7 = ? % 7' : 'DELETE FROM items WHERE id = ?').run(id);
    return many ? `delete items like ${id}` : `delete item ${id}`;
  }],
  [6, (db, random) => {
    const key = `k${random.int(0, 400)}`;
    db.prepare('INSERT INTO kv(k, v, n) VALUES (?, ?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v, n = kv.n + 1').run(key, random.bytes(random.int(10, 6000)), 1);
    return `upsert kv ${key}`;
  }],
  [3, (db, random) => {
    const key = anyId(db, random, 'kv', 'k');
    if (key === undefined) return null;
    db.prepare('DELETE FROM kv WHERE k = ?').run(key);
    return `delete kv ${key}`;
  }],
  [6, (db, random) => {
    db.prepare('INSERT INTO docs(title, body) VALUES (?, ?)').run(sentence(random, random.int(1, 4)), sentence(random, random.int(5, 300)));
    return 'insert doc';
  }],
  [3, (db, random) => {
    const id = anyId(db, random, 'docs');
    if (id === undefined) return null;
    db.prepare('DELETE FROM docs WHERE rowid = ?').run(id);
    return `delete doc ${id}`;
  }],
  [3, (db, random) => {
    const size = random.int(100 * 1024, 2 * 1024 * 1024);
    db.prepare('INSERT INTO blobs(data) VALUES (?)').run(random.bytes(size));
    return `insert blob of ${size} bytes`;
  }],
  [1, (db, random) => {
    const id = anyId(db, random, 'blobs');
    if (id === undefined) return null;
    const size = random.int(100 * 1024, 2 * 1024 * 1024);
    db.prepare('UPDATE blobs SET data = ? WHERE id = ?').run(random.bytes(size), id);
    return `rewrite blob ${id} with ${size} bytes`;
  }],
  [2, (db, random) => {
    const id = anyId(db, random, 'blobs');
    if (id === undefined) return null;
    db.prepare('DELETE FROM blobs WHERE id = ?').run(id);
    return `delete blob ${id}`;
  }],
  [4, (db, random, state) => {
    if (state.extra.length === 0) return null;
    const table = random.pick(state.extra);
    const values = table.columns.map(() => (random.next() < 0.5 ? random.int(0, 1e6) : random.text(random.int(1, 200))));
    db.prepare(`INSERT OR REPLACE INTO ${table.name}(${table.columns.join(', ')}) VALUES (${table.columns.map(() => '?').join(', ')})`).run(...values);
    return `insert into ${table.name}`;
  }],
];

const Ddl: [number, Op][] = [
  [2, (db, random, state) => {
    const name = `extra_${state.nextTable++}`;
    const rowid = random.next() < 0.7;
    db.exec(rowid ? `CREATE TABLE ${name}(id INTEGER PRIMARY KEY, c0 ANY)` : `CREATE TABLE ${name}(k INTEGER PRIMARY KEY, c0 ANY) WITHOUT ROWID`);
    state.extra.push({ name, columns: rowid ? ['c0'] : ['k', 'c0'], indexes: [] });
    return `create table ${name}${rowid ? '' : ' without rowid'}`;
  }],
  [2, (db, random, state) => {
    if (state.extra.length === 0) return null;
    const table = random.pick(state.extra);
    const column = `c${table.columns.length}`;
    db.exec(`ALTER TABLE ${table.name} ADD COLUMN ${column} TEXT DEFAULT '${random.text(5)}'`);
    table.columns.push(column);
    return `alter table ${table.name} add ${column}`;
  }],
  [2, (db, random, state) => {
    const table = state.extra.length > 0 && random.next() < 0.7 ? random.pick(state.extra) : null;
    const name = `ix_${random.text(8, 'abcdefghijklmnopqrstuvwxyz')}`;
    if (table) {
      const column = random.pick(table.columns.filter((c) => c !== 'k'));
      db.exec(`CREATE INDEX ${name} ON ${table.name}(${column})`);
      table.indexes.push(name);
    } else {
      db.exec(`CREATE INDEX IF NOT EXISTS ix_items_qty ON items(qty, name)`);
    }
    return `create index ${table ? name : 'ix_items_qty'}`;
  }],
  [1, (db, random, state) => {
    const table = state.extra.find((t) => t.indexes.length > 0);
    if (!table) {
      db.exec('DROP INDEX IF EXISTS ix_items_qty');
      return 'drop index ix_items_qty';
    }
    const name = table.indexes.splice(random.int(0, table.indexes.length - 1), 1)[0]!;
    db.exec(`DROP INDEX ${name}`);
    return `drop index ${name}`;
  }],
  [1, (db, random, state) => {
    if (state.extra.length === 0) return null;
    const [table] = state.extra.splice(random.int(0, state.extra.length - 1), 1);
    db.exec(`DROP TABLE ${table!.name}`);
    return `drop table ${table!.name}`;
  }],
];

function pick(random: Random, ops: [number, Op][]): Op {
  const total = ops.reduce((sum, [weight]) => sum + weight, 0);
  let at = random.next() * total;
  for (const [weight, op] of ops) {
    at -= weight;
    if (at < 0) return op;
  }
  return ops.at(-1)![1];
}

export function createRandomSchema(db: Database.Database): void {
  db.exec(`
    CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, note TEXT);
    CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v BLOB, n INTEGER NOT NULL) WITHOUT ROWID;
    CREATE VIRTUAL TABLE IF NOT EXISTS docs USING fts5(title, body);
    CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
  `);
}

/**
 * Runs `count` random operations, with a pause of 0..maxPauseMs between them (so that the
 * engine's polls and a checkpointer interleave with the writes); returns what was done, one
 * line each.
 */
export async function randomWorkload(db: Database.Database, random: Random, count: number, maxPauseMs = 0): Promise<string[]> {
  createRandomSchema(db);
  const state: WorkloadState = { extra: [], nextTable: 0, vacuums: 0 };
  const log: string[] = [];
  for (let i = 0; i < count; i++) {
    if (maxPauseMs > 0) await new Promise((resolve) => setTimeout(resolve, random.int(0, maxPauseMs)));
    const roll = random.next();
    if (roll < 0.1) {
      log.push(`${i}: ${pick(random, Ddl)(db, random, state) ?? 'ddl skipped'}`);
    } else if (roll < 0.22) {
      // A multi-statement transaction, or one rolled back (its pages may already be in the WAL).
      const rollback = random.next() < 0.3;
      const steps: string[] = [];
      db.exec('BEGIN IMMEDIATE');
      try {
        for (let n = random.int(2, 8); n > 0; n--) steps.push(pick(random, random.next() < 0.1 ? Ddl : Dml)(db, random, state) ?? 'skipped');
      } finally {
        db.exec(rollback ? 'ROLLBACK' : 'COMMIT');
      }
      if (rollback) {
        // The tables created or dropped inside were rolled back too: ask SQLite what exists.
        const names = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]));
        const indexes = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'index'").pluck().all() as string[]));
        state.extra = state.extra.filter((t) => names.has(t.name));
        for (const table of state.extra) {
          const columns = (db.prepare(`SELECT name FROM pragma_table_info('${table.name}')`).pluck().all() as string[]).filter((c) => c !== 'id');
          table.columns = columns;
          table.indexes = table.indexes.filter((x) => indexes.has(x));
        }
        for (const name of names) {
          if (name.startsWith('extra_') && !state.extra.some((t) => t.name === name)) {
            const columns = (db.prepare(`SELECT name FROM pragma_table_info('${name}')`).pluck().all() as string[]).filter((c) => c !== 'id');
            const own = (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL`).pluck().all(name) as string[]);
            state.extra.push({ name, columns, indexes: own });
          }
        }
      }
      log.push(`${i}: ${rollback ? 'rolled back' : 'committed'} [${steps.join('; ')}]`);
    } else if (roll < 0.235 && state.vacuums < MaxVacuums) {
      state.vacuums += 1;
      db.exec('VACUUM');
      log.push(`${i}: vacuum`);
    } else {
      log.push(`${i}: ${pick(random, Dml)(db, random, state) ?? 'skipped'}`);
    }
  }
  return log;
}
