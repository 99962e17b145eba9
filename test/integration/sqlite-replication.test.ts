/**
 * Two real nodes replicate a live SQLite database while an application (its own process,
 * test/support/sqlite-app.ts) writes to it, and a reader on the backup's side checks what a
 * user relies on: every read of the copy sees a state the primary committed — the bank's
 * money is all there, its transaction counter never goes back, integrity_check is ok — and
 * once the application stops the copy is page-identical to the database.
 *
 * Also: DROP TABLE and VACUUM, one transaction larger than a look at the WAL reads, and a
 * seeded random workload (tables with and without rowid, FTS5, large blobs, schema changes,
 * VACUUM, multi-statement and rolled-back transactions) under a foreign checkpointer.
 *
 * "Page-identical" excludes only page 1's journal-mode bytes (18, 19) and the fields SQLite
 * rewrites itself whenever it writes page 1 — the change counter, version-valid-for and the
 * version number (ChangeCounterBytes in test/support/sqlite-workload.ts).
 *
 * Replay a run with UNDERSTUDY_SQLITE_SEED=<seed in the test names>; UNDERSTUDY_SQLITE_BANK_MS
 * sets how long the bank's application writes (default 8000).
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { startPair, tempDir, type TestNode } from '../support/harness.js';
import { createRandomSchema, FtsQueries } from '../support/sqlite-random.js';
import {
  AppProcess,
  assertPageIdentical,
  Bank,
  BankSampler,
  bankViolations,
  convergeDatabase,
  type Converged,
  createBank,
  integrity,
  openDatabase,
  protectDatabase,
  readBankAt,
  troubles,
  unprotectDatabase,
  waitStatus,
} from '../support/sqlite-workload.js';

const Seed = Number(process.env.UNDERSTUDY_SQLITE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const BankMs = Number(process.env.UNDERSTUDY_SQLITE_BANK_MS ?? 8000);
const RandomOps = 300;

describe('SQLite replication of a live database', { concurrency: false }, () => {
  let primary: TestNode;
  let backup: TestNode;

  before(async () => {
    console.log(`SQLite replication seed ${Seed} (replay with UNDERSTUDY_SQLITE_SEED=${Seed})`);
    [primary, backup] = await startPair();
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  function resyncs(id: string): number {
    return primary.events.filter((e) => e.type === 'sqlite.resync' && e.object === id).length;
  }

  /** A work dir with the source and target paths; cleanups run after the test, last first. */
  function workDir(t: TestContext, name: string): { source: string; target: string; defer: (cleanup: () => unknown) => void } {
    const work = tempDir(`sqlite-${name}`);
    const cleanups: (() => unknown)[] = [() => rmSync(work, { recursive: true, force: true })];
    t.after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    });
    return { source: join(work, 'shop.db'), target: join(work, 'copy', 'shop.db'), defer: (cleanup) => cleanups.push(cleanup) };
  }

  /**
   * The bank: the application moves money between accounts as fast as it can while a reader
   * samples the backup's copy; at the end the copy is the database, page for page.
   */
  async function bank(t: TestContext, name: string, withCheckpointer: boolean): Promise<void> {
    const { source, target, defer } = workDir(t, name);
    createBank(source);
    const id = await protectDatabase(primary, source, target);
    defer(() => unprotectDatabase(primary, backup, id));
    const sampler = new BankSampler(target);
    defer(() => sampler.stop());
    let checkpointer: AppProcess | null = null;
    if (withCheckpointer) {
      checkpointer = AppProcess.start('checkpoint', source, '--every', '3');
      defer(() => checkpointer!.kill());
      await checkpointer.waitFor('ready');
    }
    // Under the checkpointer, larger memos: the WAL passes 64 MiB, where the engine lets it be checkpointed and reset.
    const app = AppProcess.start('bank', source, '--ms', String(BankMs), '--seed', String(Seed), '--memo', withCheckpointer ? '100000' : '400');
    defer(() => app.kill());
    const done = await app.finished(BankMs + 60_000);
    assert.ok(done, 'the application reported its last counter');
    const checkpoints = await checkpointer?.stop();

    const converged = await convergeDatabase(primary, id, source, target, `the copy of the bank to be page-identical (seed ${Seed})`);
    const status = converged.status;
    const samples = await sampler.stop();
    t.diagnostic(`${done.transactions} transactions; ${samples.samples} samples of the copy (${samples.integrityChecks} integrity checks), counter seen ${samples.firstCounter} -> ${samples.lastCounter}; txid ${status.txid}, ${resyncs(id)} resyncs${checkpoints ? `; checkpointer ${JSON.stringify(checkpoints)}` : ''}`);

    assert.deepEqual(bankViolations(samples), [], 'every read of the copy saw a committed state of the bank');
    assert.ok(samples.integrityChecks >= 5, `integrity_check ran ${samples.integrityChecks} times`);
    const final = readBankAt(target);
    assert.equal(final.counter, done.counter, 'the copy has the last transaction');
    assert.equal(final.total, Bank.accounts * Bank.balance);
    assert.deepEqual(integrity(target), ['ok']);
    assert.equal(status.kind, 'sqlite');
    assert.equal(status.capture, 'wal');
    assert.equal(status.source, source);
    assert.equal(status.target, target);
    assert.ok((status.txid ?? 0) > 0, 'status shows the last transaction applied on the backup');
    if (checkpoints) {
      assert.ok(Number(checkpoints.passive) > 0 && Number(checkpoints.truncate) > 0, `the checkpointer ran: ${JSON.stringify(checkpoints)}`);
      assert.ok(Number(checkpoints.framesCheckpointed) > 0, `the checkpointer checkpointed frames: ${JSON.stringify(checkpoints)}`);
    }
    // The backup's view of the object agrees.
    await waitStatus(backup, id, 'the backup to report the database in sync', (s) => s.state === 'in-sync' && s.target === target && s.txid === status.txid);
    assert.deepEqual(troubles(id, primary, backup), [], 'no errors or divergence reported');
    assertPageIdentical(converged);
  }

  test(`bank: a reader of the copy only ever sees committed states, and the copy ends page-identical (seed ${Seed})`, async (t) => {
    await bank(t, 'bank', false);
  });

  test(`bank under a foreign checkpointer (PASSIVE and TRUNCATE every few ms): same guarantees (seed ${Seed})`, async (t) => {
    await bank(t, 'bank-ckpt', true);
  });

  test('DROP TABLE of a table that is not the last one (its root page freed) replicates, and so does VACUUM after it', async (t) => {
    const { source, target, defer } = workDir(t, 'drop-table');
    const db = openDatabase(source);
    defer(() => db.close());
    db.pragma('journal_mode = wal');
    db.exec('CREATE TABLE first(id INTEGER PRIMARY KEY, x TEXT); CREATE TABLE second(id INTEGER PRIMARY KEY, y TEXT); CREATE TABLE third(z BLOB)');
    const fill = db.prepare('INSERT INTO third(z) VALUES (randomblob(500))');
    for (let i = 0; i < 200; i++) fill.run();
    db.prepare("INSERT INTO first(x) VALUES ('one'), ('two')").run();
    const id = await protectDatabase(primary, source, target);
    defer(() => unprotectDatabase(primary, backup, id));
    await convergeDatabase(primary, id, source, target, 'the initial sync');
    db.exec('DROP TABLE first');
    await convergeDatabase(primary, id, source, target, 'the DROP TABLE to reach the copy', 15_000).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; events: ${troubles(id, primary, backup).join(' | ')}`);
    });
    db.exec('DROP TABLE third');
    db.exec('VACUUM');
    db.exec("INSERT INTO second(y) VALUES ('after the vacuum')");
    const converged = await convergeDatabase(primary, id, source, target, 'the VACUUM to reach the copy', 15_000).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; events: ${troubles(id, primary, backup).join(' | ')}`);
    });
    const copy = openDatabase(target, { readonly: true });
    try {
      assert.deepEqual(copy.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all(), ['second']);
    } finally {
      copy.close();
    }
    assert.deepEqual(integrity(target), ['ok']);
    assert.deepEqual(troubles(id, primary, backup), [], 'no errors or divergence reported');
    assertPageIdentical(converged);
  });

  test('one transaction of 24 MiB (more WAL than one look reads), then small ones: all reach the copy', async (t) => {
    const { source, target, defer } = workDir(t, 'large-txn');
    createBank(source);
    const id = await protectDatabase(primary, source, target);
    defer(() => unprotectDatabase(primary, backup, id));
    await convergeDatabase(primary, id, source, target, 'the initial sync');
    const big = AppProcess.start('blobs', source, '--count', '12', '--min', String(2 * 1024 * 1024), '--max', String(2 * 1024 * 1024), '--one', '--seed', String(Seed));
    defer(() => big.kill());
    assert.equal((await big.finished())?.bytes, 24 * 1024 * 1024);
    const small = AppProcess.start('bank', source, '--ms', '500', '--seed', String(Seed));
    defer(() => small.kill());
    const done = await small.finished();
    const converged = await convergeDatabase(primary, id, source, target, 'the large transaction and the ones after it to reach the copy', 20_000);
    const copy = openDatabase(target, { readonly: true });
    try {
      assert.equal(copy.prepare('SELECT count(*) FROM blobs').pluck().get(), 12);
    } finally {
      copy.close();
    }
    assert.equal(readBankAt(target).counter, done?.counter);
    assertPageIdentical(converged);
  });

  test(`random workload (rowid and WITHOUT ROWID tables, FTS5, large blobs, schema changes, VACUUM, rollbacks) under a foreign checkpointer ends page-identical (seed ${Seed})`, async (t) => {
    const { source, target, defer } = workDir(t, 'random');
    const db = openDatabase(source);
    db.pragma('journal_mode = wal');
    createRandomSchema(db);
    db.close();
    const id = await protectDatabase(primary, source, target);
    defer(() => unprotectDatabase(primary, backup, id));
    const checkpointer = AppProcess.start('checkpoint', source, '--every', '4');
    defer(() => checkpointer.kill());
    await checkpointer.waitFor('ready');
    const startedAt = Date.now();
    const app = AppProcess.start('random', source, '--seed', String(Seed), '--ops', String(RandomOps), '--pause', '3');
    defer(() => app.kill());
    const done = await app.finished(150_000);
    const workloadMs = Date.now() - startedAt;
    assert.ok(done, 'the workload reported what it did');
    const checkpoints = await checkpointer.stop();
    const log = done.log as string[];
    t.diagnostic(`workload ${workloadMs} ms, ${resyncs(id)} resyncs; checkpointer ${JSON.stringify(checkpoints)}; ${log.filter((l) => /vacuum/.test(l)).length} vacuums, ${log.filter((l) => /rolled back/.test(l)).length} rollbacks`);

    let converged: Converged;
    try {
      converged = await convergeDatabase(primary, id, source, target, `the copy to be page-identical after the random workload (seed ${Seed})`, 60_000);
    } catch (error) {
      t.diagnostic(`workload: ${log.slice(-40).join(' | ')}`);
      throw error;
    }
    assert.deepEqual(integrity(target), ['ok'], 'integrity_check on the copy');
    const ours = openDatabase(source, { readonly: true });
    const theirs = openDatabase(target, { readonly: true });
    try {
      let found = 0;
      for (const query of FtsQueries) {
        const sql = 'SELECT rowid, title FROM docs WHERE docs MATCH ? ORDER BY rowid';
        const expected = ours.prepare(sql).all(query);
        found += expected.length;
        assert.deepEqual(theirs.prepare(sql).all(query), expected, `FTS5 MATCH '${query}' returns the same rows on the copy`);
      }
      assert.ok(found > 0, 'the FTS5 queries found something');
      const tables = "SELECT type, name, sql FROM sqlite_master ORDER BY name";
      assert.deepEqual(theirs.prepare(tables).all(), ours.prepare(tables).all(), 'the same schema');
    } finally {
      ours.close();
      theirs.close();
    }
    assert.deepEqual(troubles(id, primary, backup), [], 'no errors or divergence reported');
    assertPageIdentical(converged);
  });
});

describe('a writer that never pauses', { concurrency: false }, () => {
  // A small bound so the test needs seconds, not gigabytes: idle checkpoints past 2 MiB, busy ones past 4 × that.
  const ResetBytes = 2 * 1024 * 1024;
  let primary: TestNode;
  let backup: TestNode;
  before(async () => {
    const env = { UNDERSTUDY_WAL_RESET_BYTES: String(ResetBytes) };
    [primary, backup] = await startPair({ primary: env, backup: env });
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  test(`keeps the WAL bounded (our guard would otherwise keep SQLite from ever resetting it), and the bank guarantees hold (seed ${Seed})`, async (t) => {
    const work = tempDir('sqlite-busy');
    t.after(() => rmSync(work, { recursive: true, force: true }));
    const source = join(work, 'shop.db');
    const target = join(work, 'copy', 'shop.db');
    createBank(source);
    const id = await protectDatabase(primary, source, target);
    const sampler = new BankSampler(target);
    let largestWal = 0;
    const watch = setInterval(() => (largestWal = Math.max(largestWal, existsSync(`${source}-wal`) ? statSync(`${source}-wal`).size : 0)), 50);
    try {
      // Back-to-back transactions with large memos: tens of MiB of WAL a second, never an idle look.
      const app = AppProcess.start('bank', source, '--ms', String(BankMs), '--seed', String(Seed), '--memo', '20000');
      const done = await app.finished(BankMs + 60_000);
      assert.ok(done, 'the application reported its last counter');
      const converged = await convergeDatabase(primary, id, source, target, `the copy of the bank to be page-identical (seed ${Seed})`);
      const samples = await sampler.stop();
      const resets = primary.events.filter((e) => e.type === 'sqlite.resync' && e.object === id).length;
      t.diagnostic(`${done.transactions} transactions; largest WAL ${(largestWal / 1048576).toFixed(1)} MiB; ${resets} resyncs; ${samples.samples} samples of the copy`);
      // Unbounded, this workload's WAL reaches several hundred MiB in 8 s (about 100 MiB/s);
      // bounded, it peaks at a few times the busy bound (the application writes on while a reset waits for its moment).
      assert.ok(largestWal < 64 * ResetBytes, `the WAL stayed bounded: its largest was ${(largestWal / 1048576).toFixed(1)} MiB`);
      assert.deepEqual(bankViolations(samples), [], 'every read of the copy saw a committed state of the bank');
      assert.equal(readBankAt(target).counter, done.counter, 'the copy has the last transaction');
      assert.deepEqual(integrity(target), ['ok']);
      assert.deepEqual(troubles(id, primary, backup), [], 'no errors or divergence reported');
      assertPageIdentical(converged);
    } finally {
      clearInterval(watch);
      await sampler.stop();
    }
  });
});
