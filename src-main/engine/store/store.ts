/**
 * The node's one SQLite database: settings, pinned peers and the event log, in WAL mode
 * with full fsync, because pins, roles and epochs must survive a power cut.
 */
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { Migrations } from './migrations.js';
import { UnderstudyError } from '../errors.js';
import type { NodeRole } from '../../contract/control.js';

export const StoreFile = 'understudy.db';

export interface PeerRecord {
  id: string;
  name: string;
  role: NodeRole;
  keyHash: Buffer;
  certPem: string;
  host: string;
  port: number;
  pairedAt: string;
}

export interface EventRecord {
  id: number;
  at: string;
  type: string;
  message: string;
  data: Record<string, unknown> | null;
}

export interface NodeSettings {
  name: string;
  listenHost: string;
  listenPort: number;
  role: NodeRole;
  epoch: number;
}

interface PeerRow {
  id: string;
  name: string;
  role: NodeRole;
  key_hash: Buffer;
  cert_pem: string;
  host: string;
  port: number;
  paired_at: string;
}

interface EventRow {
  id: number;
  at: string;
  type: string;
  message: string;
  data: string | null;
}

export class Store {
  private constructor(private readonly db: Database.Database) {}

  /** Opens (and migrates) the store in a home directory. readonly opens without migrating. */
  static open(home: string, options: { readonly?: boolean } = {}): Store {
    let db: Database.Database;
    try {
      db = new Database(join(home, StoreFile), { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false });
    } catch (error) {
      throw new UnderstudyError('store-failed', `cannot open the node's store in ${home}: ${(error as Error).message}`, {
        hint: 'check that the home directory exists and is writable',
        cause: error,
      });
    }
    if (!options.readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      migrate(db);
    }
    return new Store(db);
  }

  close(): void {
    this.db.close();
  }

  /** The connection, for the stores of subsystems that keep their own tables in this database. */
  get database(): Database.Database {
    return this.db;
  }

  getSetting<T>(key: string): T | undefined {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  setSetting(key: string, value: unknown): void {
    this.db
      .prepare('INSERT INTO settings(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value')
      .run(key, JSON.stringify(value));
  }

  nodeSettings(): NodeSettings {
    const name = this.getSetting<string>('node.name');
    const listen = this.getSetting<{ host: string; port: number }>('node.listen');
    if (name === undefined || listen === undefined) {
      throw new UnderstudyError('home-not-initialized', 'the node store has no name or listen address', {
        hint: "run 'understudy init' on this home",
      });
    }
    return {
      name,
      listenHost: listen.host,
      listenPort: listen.port,
      role: this.getSetting<NodeRole>('node.role') ?? 'standalone',
      epoch: this.getSetting<number>('node.epoch') ?? 0,
    };
  }

  listPeers(): PeerRecord[] {
    const rows = this.db.prepare('SELECT * FROM peers ORDER BY paired_at').all() as PeerRow[];
    return rows.map(toPeer);
  }

  /**
   * Pins a peer and sets this node's role and epoch in one durable transaction,
   * so a crash leaves either no pairing or a whole one.
   */
  recordPairing(peer: PeerRecord, self: { role: NodeRole; epoch: number }): void {
    this.db.transaction(() => {
      this.db
        .prepare(
          `INSERT INTO peers(id, name, role, key_hash, cert_pem, host, port, paired_at)
           VALUES(@id, @name, @role, @keyHash, @certPem, @host, @port, @pairedAt)`,
        )
        .run(peer);
      this.setSetting('node.role', self.role);
      this.setSetting('node.epoch', self.epoch);
    })();
  }

  /** Pins a member the primary told us about (the pair's witness, or the backup on the witness); our own role is unchanged. */
  pinMember(peer: PeerRecord): void {
    this.db
      .prepare(
        `INSERT INTO peers(id, name, role, key_hash, cert_pem, host, port, paired_at)
         VALUES(@id, @name, @role, @keyHash, @certPem, @host, @port, @pairedAt)
         ON CONFLICT(id) DO UPDATE SET role = excluded.role, host = excluded.host, port = excluded.port`,
      )
      .run(peer);
  }

  /** Undoes a pairing that did not complete on both sides. */
  removePairing(peerId: string, self: { role: NodeRole; epoch: number }): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM peers WHERE id = ?').run(peerId);
      this.setSetting('node.role', self.role);
      this.setSetting('node.epoch', self.epoch);
    })();
  }

  /** A role change (switchover, promotion, stepping down): this node's role and epoch and the peer's role, durably together. */
  setRoles(self: { role: NodeRole; epoch: number }, peer: { id: string; role: NodeRole }): void {
    this.db.transaction(() => {
      this.setSetting('node.role', self.role);
      this.setSetting('node.epoch', self.epoch);
      this.db.prepare('UPDATE peers SET role = ? WHERE id = ?').run(peer.role, peer.id);
    })();
  }

  updatePeerSeen(peerId: string, fields: { name: string; role: NodeRole }): void {
    this.db.prepare('UPDATE peers SET name = ?, role = ? WHERE id = ?').run(fields.name, fields.role, peerId);
  }

  addEvent(at: string, type: string, message: string, data: Record<string, unknown> | null): EventRecord {
    const info = this.db
      .prepare('INSERT INTO events(at, type, message, data) VALUES(?, ?, ?, ?)')
      .run(at, type, message, data ? JSON.stringify(data) : null);
    return { id: Number(info.lastInsertRowid), at, type, message, data };
  }

  /** Events oldest first; afterId pages forward, limit keeps the newest ones. */
  listEvents(options: { afterId?: number; limit?: number } = {}): EventRecord[] {
    const rows = this.db
      .prepare('SELECT * FROM (SELECT * FROM events WHERE id > ? ORDER BY id DESC LIMIT ?) ORDER BY id ASC')
      .all(options.afterId ?? 0, options.limit ?? -1) as EventRow[];
    return rows.map((row) => ({ ...row, data: row.data ? (JSON.parse(row.data) as Record<string, unknown>) : null }));
  }
}

function toPeer(row: PeerRow): PeerRecord {
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    keyHash: row.key_hash,
    certPem: row.cert_pem,
    host: row.host,
    port: row.port,
    pairedAt: row.paired_at,
  };
}

function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > Migrations.length) {
    throw new UnderstudyError('store-failed', `the store is at schema version ${current}, newer than this Understudy knows (${Migrations.length})`, {
      hint: 'run the newer Understudy that last used this home',
    });
  }
  for (let version = current + 1; version <= Migrations.length; version++) {
    db.transaction(() => {
      db.exec(Migrations[version - 1]!);
      db.pragma(`user_version = ${version}`);
    })();
  }
}
