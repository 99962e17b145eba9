/**
 * SQLite replication when things go wrong, with two real nodes and the application in its
 * own process: kill -9 of the primary node, of the backup node and of the application in the
 * middle of a large transaction or while its COMMIT waits for fsync (held there by strace);
 * files that are not databases; a database held in exclusive locking mode; a database that
 * disappears, or is deleted and created again (same or another page size); a rollback-journal
 * database; a database protected twice. A reader on the backup's side checks the bank's
 * invariant wherever the bank runs. Each test protects its own database and unprotects it at
 * the end.
 *
 * Replay a run with UNDERSTUDY_SQLITE_SEED=<seed in the test names>.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EventRecord } from '../../src-main/contract/control.js';
import { sleep, startPair, tempDir, waitFor, waitPeerUp, type CliResult, type TestNode } from '../support/harness.js';
import { Random } from '../support/random.js';
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
  objectStatus,
  openDatabase,
  protectDatabase,
  readBankAt,
  removeDatabase,
  straceWorks,
  troubles,
  unprotectDatabase,
  waitStatus,
} from '../support/sqlite-workload.js';

const Seed = Number(process.env.UNDERSTUDY_SQLITE_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** The bank read from a copy, or null when the copy does not hold it (yet). */
function readBankAtOrNull(path: string): ReturnType<typeof readBankAt> | null {
  try {
    return readBankAt(path);
  } catch {
    return null;
  }
}

function ofObject(events: EventRecord[], type: string, id: string, since = 0): EventRecord[] {
  return events.slice(since).filter((e) => e.type === type && e.object === id);
}

/** A refusal as a person sees it: a non-zero exit, nothing on stdout, one line on stderr that says what is wrong. */
function assertRefusedLine(result: CliResult, says: RegExp): void {
  const context = `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  assert.notEqual(result.code, 0, `a non-zero exit\n${context}`);
  assert.equal(result.stdout, '', `nothing on stdout\n${context}`);
  const lines = result.stderr.split('\n').filter((line) => line.trim() !== '');
  assert.equal(lines.length, 1, `exactly one line on stderr\n${context}`);
  assert.ok(!result.stderr.includes('    at '), `no stack trace\n${context}`);
  assert.match(lines[0]!, /^understudy: /);
  assert.match(lines[0]!, says);
}

describe('SQLite replication faults', { concurrency: false }, () => {
  const random = new Random(Seed);
  let primary: TestNode;
  let backup: TestNode;

  before(async () => {
    console.log(`SQLite faults seed ${Seed} (replay with UNDERSTUDY_SQLITE_SEED=${Seed})`);
    [primary, backup] = await startPair();
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  /** A work dir with the source and target paths; cleanups run after the test, last first. */
  function workDir(t: TestContext, name: string): { work: string; source: string; target: string; defer: (cleanup: () => unknown) => void } {
    const work = tempDir(`sqlite-faults-${name}`);
    const cleanups: (() => unknown)[] = [() => rmSync(work, { recursive: true, force: true })];
    t.after(async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    });
    return { work, source: join(work, 'shop.db'), target: join(work, 'copy', 'shop.db'), defer: (cleanup) => cleanups.push(cleanup) };
  }

  /** Both nodes up again after a restart, seeing each other. */
  async function bothUp(): Promise<void> {
    await Promise.all([waitPeerUp(primary, 20_000), waitPeerUp(backup, 20_000)]);
  }

  /** A bank database protected, with a sampler reading the copy from now on. */
  async function protectedBank(t: TestContext, name: string): Promise<{ source: string; target: string; id: string; sampler: BankSampler; defer: (cleanup: () => unknown) => void }> {
    const { source, target, defer } = workDir(t, name);
    createBank(source);
    const id = await protectDatabase(primary, source, target);
    defer(() => unprotectDatabase(primary, backup, id));
    const sampler = new BankSampler(target);
    defer(() => sampler.stop());
    return { source, target, id, sampler, defer };
  }

  test(`kill -9 of the primary node while the application writes: the copy converges, and every read of it saw a committed state (seed ${Seed})`, async (t) => {
    const { source, target, id, sampler, defer } = await protectedBank(t, 'kill-primary');
    const app = AppProcess.start('bank', source, '--ms', '6000', '--seed', String(Seed));
    defer(() => app.kill());
    await app.waitFor('ready');
    await sleep(random.int(1200, 2500));
    await primary.kill();
    // The application keeps writing while its node is down: the restart must catch up.
    await waitStatus(backup, id, 'the backup to show the database paused', (s) => s.state === 'paused', 10_000);
    await sleep(random.int(0, 800));
    await primary.serve();
    await bothUp();
    const done = await app.finished();
    const converged = await convergeDatabase(primary, id, source, target, 'the copy to converge after the primary node was killed');
    const samples = await sampler.stop();
    t.diagnostic(`${done?.transactions} transactions; ${samples.samples} samples, counter ${samples.firstCounter} -> ${samples.lastCounter}; txid ${converged.status.txid}`);
    assert.deepEqual(bankViolations(samples), [], 'every read of the copy saw a committed state of the bank');
    assert.equal(readBankAt(target).counter, done?.counter, 'the copy has the last transaction');
    assert.deepEqual(integrity(target), ['ok']);
    assert.deepEqual(troubles(id, primary, backup), [], 'no errors or divergence reported');
    assertPageIdentical(converged);
  });

  test(`kill -9 of the backup node right after a burst of large transactions: restart, page-identical, integrity ok (seed ${Seed})`, async (t) => {
    const { source, target, id, sampler, defer } = await protectedBank(t, 'kill-backup');
    const app = AppProcess.start('bank', source, '--ms', '5000', '--seed', String(Seed));
    defer(() => app.kill());
    await app.waitFor('ready');
    await waitFor('the copy to hold the bank', () => (sampler.result.lastCounter !== null ? true : undefined), 15_000);
    const burst = AppProcess.start('blobs', source, '--count', '16', '--min', String(512 * 1024), '--max', String(2 * 1024 * 1024), '--seed', String(Seed));
    defer(() => burst.kill());
    await burst.finished();
    // The backup is applying the burst (or about to) when it dies.
    await sleep(random.int(0, 150));
    await backup.kill();
    await sleep(random.int(200, 1000));
    await backup.serve();
    await bothUp();
    const done = await app.finished();
    const converged = await convergeDatabase(primary, id, source, target, 'the copy to converge after the backup node was killed');
    const samples = await sampler.stop();
    t.diagnostic(`${done?.transactions} transactions; ${samples.samples} samples, counter ${samples.firstCounter} -> ${samples.lastCounter}; txid ${converged.status.txid}`);
    assert.deepEqual(integrity(target), ['ok']);
    assert.deepEqual(bankViolations(samples), [], 'every read of the copy saw a committed state, across the crash of the backup too');
    assert.equal(readBankAt(target).counter, done?.counter);
    const copy = openDatabase(target, { readonly: true });
    try {
      assert.equal(copy.prepare('SELECT count(*) FROM blobs').pluck().get(), 16, 'the copy has every large transaction');
    } finally {
      copy.close();
    }
    assert.deepEqual(troubles(id, primary, backup), [], 'no errors or divergence reported');
    assertPageIdentical(converged);
  });

  test(`kill -9 of the application in the middle of large transactions: the copy never shows a partial one and ends as SQLite recovered the database (seed ${Seed})`, async (t) => {
    const { source, target, id, sampler, defer } = await protectedBank(t, 'kill-app');
    // Large transactions (every account touched, a memo of up to 1 MiB, a small cache: they spill into the WAL before they commit), killed at a random moment.
    const heavy = AppProcess.start('bank', source, '--ms', '30000', '--heavy', '--sync', 'full', '--seed', String(Seed));
    defer(() => heavy.kill());
    await heavy.waitFor('ready');
    await sleep(random.int(600, 1800));
    await heavy.kill();
    // Then one that is certainly open when the application dies: half of it spilled into the WAL.
    const hang = AppProcess.start('hang', source);
    defer(() => hang.kill());
    const open = await hang.waitFor('in-transaction');
    await sleep(300);
    await hang.kill();
    // The application's next start: SQLite recovers the database (the open transaction is gone)...
    const recovered = readBankAt(source);
    assert.equal(recovered.total, Bank.accounts * Bank.balance, 'the primary lost the open transaction');
    assert.ok(recovered.counter < 1_000_000, 'the open transaction never committed');
    const converged = await convergeDatabase(primary, id, source, target, 'the copy to converge after the application was killed');
    const copy = readBankAt(target);
    assert.equal(copy.counter, recovered.counter, 'the copy has what the primary has after recovery');
    assert.equal(copy.total, recovered.total);
    // ...and writes again, over the frames the dead transaction left in the WAL.
    const again = AppProcess.start('bank', source, '--ms', '500', '--seed', String(Seed + 1));
    defer(() => again.kill());
    const done = await again.finished();
    const final = await convergeDatabase(primary, id, source, target, 'the copy to converge after the application wrote again');
    const samples = await sampler.stop();
    t.diagnostic(`open transaction touched ${open.accounts} accounts; ${samples.samples} samples, counter ${samples.firstCounter} -> ${samples.lastCounter}`);
    assert.deepEqual(bankViolations(samples, 30), [], 'no read of the copy saw a partial transaction');
    assert.equal(readBankAt(target).counter, done?.counter);
    assert.deepEqual(integrity(target), ['ok']);
    assert.deepEqual(troubles(id, primary, backup), [], 'no errors or divergence reported');
    assertPageIdentical(converged);
    assertPageIdentical(final);
  });

  test(
    'an application killed while its COMMIT waits for fsync (commit frame in the WAL, not yet in the WAL index): the copy never shows that transaction, and replication goes on',
    { skip: straceWorks() ? false : 'needs strace (ptrace) to hold the fsync' },
    async (t) => {
      const { source, target, id, sampler, defer } = await protectedBank(t, 'commit-fsync');
      const first = AppProcess.start('bank', source, '--ms', '300', '--seed', String(Seed));
      defer(() => first.kill());
      await first.finished();
      await convergeDatabase(primary, id, source, target, 'the initial sync');
      const before = readBankAt(source).counter;
      // One transaction, its fsync held for 4 s: SQLite has written the commit frame into the WAL,
      // and makes the transaction visible (the WAL index) only after the fsync returns.
      const slow = AppProcess.withSlowFsync(
        4000,
        'write',
        source,
        '--sync',
        'full',
        '--sql',
        "BEGIN IMMEDIATE; UPDATE accounts SET balance = balance - 100 WHERE id = 1; UPDATE meta SET value = value + 1000 WHERE key = 'counter'; UPDATE accounts SET balance = balance + 100 WHERE id = 2; COMMIT",
      );
      defer(() => slow.kill());
      const { pid } = await slow.waitFor('ready');
      await sleep(1500);
      const duringPrimary = readBankAt(source).counter;
      const duringCopy = readBankAt(target).counter;
      // The application dies in its COMMIT; SQLite never committed that transaction.
      process.kill(Number(pid), 'SIGKILL');
      await slow.kill();
      const lost = readBankAt(source).counter;
      // The application starts again and goes on writing.
      const again = AppProcess.start('bank', source, '--ms', '500', '--seed', String(Seed + 1));
      defer(() => again.kill());
      const done = await again.finished();
      let converged: Converged | null = null;
      let stuck = '';
      try {
        converged = await convergeDatabase(primary, id, source, target, 'the copy to converge after the application died in its COMMIT', 15_000);
      } catch (error) {
        stuck = (error as Error).message;
      }
      const samples = await sampler.stop();
      t.diagnostic(`counter: before ${before}; while the COMMIT waited: primary ${duringPrimary}, copy ${duringCopy}; after the kill: primary ${lost}; at the end ${done?.counter}`);
      assert.equal(duringPrimary, before, "while the COMMIT waits for its fsync, the database's readers do not see it");
      const problems: string[] = [];
      if (duringCopy !== before) problems.push(`while the COMMIT waited for its fsync, the copy already showed it (counter ${duringCopy}; the database's readers saw ${duringPrimary})`);
      if (stuck) problems.push(`replication did not go on: ${stuck}`);
      problems.push(...bankViolations(samples, 20));
      if (readBankAt(target).counter !== done?.counter) problems.push(`the copy ends with counter ${readBankAt(target).counter}, the database with ${done?.counter}`);
      problems.push(...troubles(id, primary, backup));
      assert.deepEqual(problems, [], 'the copy only ever shows what SQLite committed, and follows the database afterwards');
      assertPageIdentical(converged!);
    },
  );

  test('a database replaced by one with another page size (8192): the copy follows', async (t) => {
    const { source, target, id, defer } = await protectedBank(t, 'page-size');
    const app = AppProcess.start('bank', source, '--ms', '300', '--seed', String(Seed));
    defer(() => app.kill());
    await app.finished();
    await convergeDatabase(primary, id, source, target, 'the initial sync');
    const since = primary.events.length;
    removeDatabase(source);
    createBank(source, 'wal', { accounts: 25, balance: 500 }, 8192);
    const again = AppProcess.start('bank', source, '--ms', '300', '--seed', String(Seed));
    defer(() => again.kill());
    const done = await again.finished();
    await primary.waitForEvent('sqlite.resync', since, 15_000);
    const converged = await convergeDatabase(primary, id, source, target, 'the copy to hold the new database', 20_000);
    const copy = openDatabase(target, { readonly: true });
    try {
      assert.equal(copy.pragma('page_size', { simple: true }), 8192);
    } finally {
      copy.close();
    }
    const bank = readBankAt(target);
    assert.deepEqual([bank.accounts, bank.total, bank.counter], [25, 25 * 500, done?.counter]);
    assert.deepEqual(integrity(target), ['ok']);
    assertPageIdentical(converged);
  });

  test('protect sqlite refuses random bytes, a -wal file, a missing path and a folder: one clear line each, nothing added', async (t) => {
    const { work, source } = workDir(t, 'refused');
    createBank(source);
    const junk = join(work, 'junk.db');
    writeFileSync(junk, random.bytes(16 * 1024));
    const held = openDatabase(source);
    held.exec("UPDATE meta SET value = value + 1 WHERE key = 'counter'");
    assert.ok(existsSync(`${source}-wal`), 'the -wal file exists while the database is open');
    const folder = join(work, 'a-folder');
    mkdirSync(folder);
    const before = (await primary.status()).objects.length;
    const eventsBefore = primary.events.length;
    try {
      assertRefusedLine(await primary.cli('protect', 'sqlite', junk, '--to', join(work, 'x.db')), /junk\.db is not a SQLite database/);
      assertRefusedLine(await primary.cli('protect', 'sqlite', `${source}-wal`, '--to', join(work, 'x.db')), /shop\.db-wal is a SQLite side file, not the database/);
      assertRefusedLine(await primary.cli('protect', 'sqlite', `${source}-shm`, '--to', join(work, 'x.db')), /shop\.db-shm is a SQLite side file/);
      assertRefusedLine(await primary.cli('protect', 'sqlite', join(work, 'missing.db'), '--to', join(work, 'x.db')), /missing\.db (does not exist|is not a database file)/);
      assertRefusedLine(await primary.cli('protect', 'sqlite', folder, '--to', join(work, 'x.db')), /a-folder is not a database file/);
    } finally {
      held.close();
    }
    assert.equal((await primary.status()).objects.length, before, 'nothing was added to the status');
    assert.deepEqual(primary.events.slice(eventsBefore).filter((e) => e.type === 'sqlite.protected'), []);
    assert.equal(existsSync(join(work, 'x.db')), false);
  });

  test('a database protected twice is refused, and the first protection keeps working', async (t) => {
    const { work, source, target, defer } = workDir(t, 'twice');
    createBank(source);
    const id = await protectDatabase(primary, source, target);
    defer(() => unprotectDatabase(primary, backup, id));
    assertRefusedLine(await primary.cli('protect', 'sqlite', source, '--to', join(work, 'second.db')), new RegExp(`already protected \\(${id}\\)`));
    assert.equal((await primary.status()).objects.filter((o) => o.source === source).length, 1);
    const app = AppProcess.start('bank', source, '--ms', '300', '--seed', String(Seed));
    defer(() => app.kill());
    const done = await app.finished();
    const converged = await convergeDatabase(primary, id, source, target, 'the first protection to replicate');
    assert.equal(readBankAt(target).counter, done?.counter);
    assert.equal(existsSync(join(work, 'second.db')), false);
    // The same file through a symbolic link is the same database.
    const link = join(work, 'link.db');
    symlinkSync(source, link);
    const linked = await primary.cli('protect', 'sqlite', link, '--to', join(work, 'third.db'));
    if (linked.code === 0) defer(() => unprotectDatabase(primary, backup, linked.stdout.trim().split('\n').at(-1)!));
    assertRefusedLine(linked, /already protected/);
    assertPageIdentical(converged);
  });

  test('a database held in exclusive locking mode: state error and an sqlite.error event saying so; it recovers once the lock is released', async (t) => {
    const { source, target, defer } = workDir(t, 'locked');
    createBank(source);
    const locker = AppProcess.start('lock', source);
    defer(() => locker.kill());
    await locker.waitFor('locked');
    const since = primary.events.length;
    const result = await primary.cli('protect', 'sqlite', source, '--to', target);
    // Accepted or refused, the user must be told; accepted, the status must show the error.
    if (result.code !== 0) {
      assertRefusedLine(result, /locked/);
      return;
    }
    const id = result.stdout.trim().split('\n').at(-1)!;
    defer(() => unprotectDatabase(primary, backup, id));
    const failing = await waitStatus(primary, id, 'the primary to report the locked database in error', (s) => s.state === 'error');
    assert.match(failing.error ?? '', /locked/, `the status says the database is locked: ${failing.error}`);
    const event = await primary.waitForEvent('sqlite.error', since);
    assert.equal(event.object, id);
    assert.match(event.message, /locked/);

    // A person notices, finds the program holding the lock and stops it: that takes a while.
    await sleep(3000);
    assert.equal((await objectStatus(primary, id))?.state, 'error', 'still in error while the lock is held');
    assert.equal(existsSync(target) && readBankAtOrNull(target) !== null, false, 'nothing reached the copy while the database was locked');
    const released = primary.events.length;
    assert.equal((await locker.stop())?.event, 'released');
    await primary.waitForEvent('sqlite.recovered', released, 10_000).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; status: ${JSON.stringify(failing)}; events: ${ofObject(primary.events, 'sqlite.error', id, since).map((e) => e.message).join(' | ')}`);
    });
    const converged = await convergeDatabase(primary, id, source, target, 'the copy once the lock was released', 20_000);
    assert.equal(readBankAt(target).counter, 1, 'the copy has the write made under the exclusive lock');
    assertPageIdentical(converged);
  });

  test('a database that disappears for a while: error saying so, the copy kept, recovery once it is back', async (t) => {
    const { source, target, id, sampler, defer } = await protectedBank(t, 'vanish');
    const app = AppProcess.start('bank', source, '--ms', '300', '--seed', String(Seed));
    defer(() => app.kill());
    const first = await app.finished();
    await convergeDatabase(primary, id, source, target, 'the initial sync');
    const since = primary.events.length;
    // Someone moves the database away (to restore it later): a copy kept aside, the file and its side files gone.
    const saved = join(source, '..', 'saved.db');
    const db = openDatabase(source);
    db.prepare('VACUUM INTO ?').run(saved);
    db.close();
    removeDatabase(source);
    const error = await primary.waitForEvent('sqlite.error', since, 10_000);
    assert.equal(error.object, id);
    assert.match(error.message, /shop\.db (does not exist|cannot be read)/);
    await waitStatus(primary, id, 'the status to show the error', (s) => s.state === 'error' && /shop\.db/.test(s.error ?? ''));
    await sleep(2500);
    assert.equal(readBankAt(target).counter, first?.counter, 'the copy is kept while the database is away');
    assert.equal((await objectStatus(primary, id))?.state, 'error', 'still in error while the database is away');

    const back = primary.events.length;
    const restore = openDatabase(saved);
    restore.prepare('VACUUM INTO ?').run(source);
    restore.close();
    const restored = openDatabase(source);
    restored.pragma('journal_mode = wal');
    restored.close();
    const again = AppProcess.start('bank', source, '--ms', '300', '--seed', String(Seed + 1));
    defer(() => again.kill());
    const second = await again.finished();
    await primary.waitForEvent('sqlite.recovered', back, 10_000).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; events: ${ofObject(primary.events, 'sqlite.error', id, since).map((e) => e.message).join(' | ')}`);
    });
    const converged = await convergeDatabase(primary, id, source, target, 'the copy once the database is back', 20_000);
    const samples = await sampler.stop();
    assert.equal(readBankAt(target).counter, second?.counter);
    assert.ok(Number(second?.counter) > Number(first?.counter));
    assert.deepEqual(bankViolations(samples, 20), []);
    assertPageIdentical(converged);
  });

  test('a database deleted and created again under the same path with other content: the copy gets the new content (sqlite.resync)', async (t) => {
    const { source, target, id, defer } = await protectedBank(t, 'recreate');
    const app = AppProcess.start('bank', source, '--ms', '300', '--seed', String(Seed));
    defer(() => app.kill());
    await app.finished();
    await convergeDatabase(primary, id, source, target, 'the initial sync');
    const since = primary.events.length;

    removeDatabase(source);
    const db = openDatabase(source);
    db.pragma('journal_mode = wal');
    db.exec(`
      CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL);
      CREATE INDEX products_by_name ON products(name);
    `);
    const insert = db.prepare('INSERT INTO products(name, price) VALUES (?, ?)');
    db.transaction(() => {
      for (let i = 0; i < 3000; i++) insert.run(random.text(random.int(5, 60)), random.int(1, 100_000));
    })();
    db.close();
    const resync = await primary.waitForEvent('sqlite.resync', since, 15_000);
    assert.equal(resync.object, id);
    const converged = await convergeDatabase(primary, id, source, target, 'the copy to hold the new database', 20_000);
    const copy = openDatabase(target, { readonly: true });
    try {
      assert.equal(copy.prepare('SELECT count(*) FROM products').pluck().get(), 3000);
      assert.equal(copy.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'accounts'").pluck().get(), 0, 'the old tables are gone');
    } finally {
      copy.close();
    }
    assert.deepEqual(integrity(target), ['ok']);
    assertPageIdentical(converged);
  });

  test('a rollback-journal database (journal_mode=DELETE) replicates by snapshots (capture snapshot) and ends identical', async (t) => {
    const { source, target, defer } = workDir(t, 'rollback');
    createBank(source, 'delete');
    const id = await protectDatabase(primary, source, target);
    defer(() => unprotectDatabase(primary, backup, id));
    const sampler = new BankSampler(target);
    defer(() => sampler.stop());
    const app = AppProcess.start('bank', source, '--ms', '3000', '--seed', String(Seed));
    defer(() => app.kill());
    const done = await app.finished();
    const converged = await convergeDatabase(primary, id, source, target, 'the copy of the rollback-journal database', 20_000);
    const samples = await sampler.stop();
    t.diagnostic(`${done?.transactions} transactions; ${samples.samples} samples, counter ${samples.firstCounter} -> ${samples.lastCounter}`);
    assert.equal(converged.status.capture, 'snapshot');
    assert.equal((await objectStatus(primary, id))?.capture, 'snapshot');
    const app2 = openDatabase(source, { readonly: true });
    assert.equal(app2.pragma('journal_mode', { simple: true }), 'delete', "the application's database is left in its journal mode");
    app2.close();
    assert.deepEqual(bankViolations(samples), [], 'every read of the copy saw a committed state');
    assert.equal(readBankAt(target).counter, done?.counter);
    assert.deepEqual(integrity(target), ['ok']);
    assert.deepEqual(troubles(id, primary, backup), [], 'no errors reported: the application only wrote, as applications do');
    assertPageIdentical(converged);
  });
});
