import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { UnderstudyError } from '../errors.js';
import { Migrations } from './migrations.js';
import { Store, StoreFile, type PeerRecord } from './store.js';

function tempHome(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openStore(t: TestContext, home: string): Store {
  const store = Store.open(home);
  t.after(() => store.close());
  return store;
}

function rawPragma(home: string, pragma: string): unknown {
  const db = new Database(join(home, StoreFile), { readonly: true });
  try {
    return db.pragma(pragma, { simple: true });
  } finally {
    db.close();
  }
}

const peer: PeerRecord = {
  id: 'ABCDEFGHIJKLM-NOPQRSTUVWXYZ2-34567ABCDEFGH-IJKLMNOPQRSTU',
  name: 'shop-b',
  role: 'backup',
  keyHash: Buffer.alloc(32, 7),
  certPem: '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n',
  host: '10.0.0.2',
  port: 7420,
  pairedAt: '2026-01-01T00:00:00.000Z',
};

describe('Store', () => {
  test('a new store is migrated to the latest schema, in WAL mode', (t) => {
    const home = tempHome(t);
    Store.open(home).close();
    assert.equal(rawPragma(home, 'user_version'), Migrations.length);
    assert.equal(rawPragma(home, 'journal_mode'), 'wal');
  });

  test('reopening keeps the data and does not run migrations again', (t) => {
    const home = tempHome(t);
    const first = Store.open(home);
    first.setSetting('node.name', 'shop-a');
    first.close();
    const second = openStore(t, home);
    assert.equal(second.getSetting('node.name'), 'shop-a');
    assert.equal(rawPragma(home, 'user_version'), Migrations.length);
  });

  test('a store from a newer Understudy is refused', (t) => {
    const home = tempHome(t);
    Store.open(home).close();
    const db = new Database(join(home, StoreFile));
    db.pragma(`user_version = ${Migrations.length + 1}`);
    db.close();
    assert.throws(
      () => Store.open(home),
      (error) => error instanceof UnderstudyError && error.code === 'store-failed',
    );
  });

  test('recordPairing pins the peer and sets role and epoch; removePairing undoes it', (t) => {
    const store = openStore(t, tempHome(t));
    store.setSetting('node.name', 'shop-a');
    store.setSetting('node.listen', { host: '0.0.0.0', port: 7420 });
    assert.equal(store.nodeSettings().role, 'standalone');

    store.recordPairing(peer, { role: 'primary', epoch: 1 });
    assert.deepEqual(store.listPeers(), [peer]);
    assert.deepEqual(store.nodeSettings(), { name: 'shop-a', listenHost: '0.0.0.0', listenPort: 7420, role: 'primary', epoch: 1 });

    store.removePairing(peer.id, { role: 'standalone', epoch: 0 });
    assert.deepEqual(store.listPeers(), []);
    assert.equal(store.nodeSettings().role, 'standalone');
    assert.equal(store.nodeSettings().epoch, 0);
  });

  test('events come back oldest first; limit keeps the newest, afterId pages forward', (t) => {
    const store = openStore(t, tempHome(t));
    const added = [1, 2, 3, 4, 5].map((n) => store.addEvent(`2026-01-01T00:00:0${n}.000Z`, 'test', `event ${n}`, n % 2 ? { n } : null));
    const messages = (events: { message: string }[]) => events.map((e) => e.message);

    assert.deepEqual(store.listEvents(), added);
    assert.deepEqual(messages(store.listEvents({ limit: 2 })), ['event 4', 'event 5']);
    assert.deepEqual(messages(store.listEvents({ afterId: added[2]!.id })), ['event 4', 'event 5']);
    assert.deepEqual(messages(store.listEvents({ afterId: added[0]!.id, limit: 3 })), ['event 3', 'event 4', 'event 5']);
    assert.deepEqual(messages(store.listEvents({ afterId: added[0]!.id, limit: 1 })), ['event 5']);
    assert.deepEqual(store.listEvents({ afterId: added[4]!.id }), []);
  });
});
