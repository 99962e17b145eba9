/**
 * Pausing, resuming and resyncing objects between two real nodes, and the lag figures that go
 * with them: status shows the lag stage by stage and the throughput while the application
 * writes; a paused folder and database keep their changes off the backup (captured, pending,
 * paused in status on both nodes, a blocker for a switchover) through a restart of the primary,
 * and a resume sends them; a resync puts back a copy damaged by hand, keeping the damaged
 * version; `history` gives the samples of the last hour.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { EventRecord, LagSample, ObjectStatus } from '../../src-main/contract/control.js';
import { protectFolderAndDatabase, sleep, startPair, tempDir, TestNode, waitFor, waitPeerUp } from '../support/harness.js';
import { assertRefused } from '../support/checks.js';
import { noteBodies } from '../support/sqlite-workload.js';

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
/**
 * History samples every 200 ms (development only); continuous audits and full rescans out of
 * the way, so that only the resync can be what repairs a damaged copy.
 */
const Env = { UNDERSTUDY_DEV: '1', UNDERSTUDY_HISTORY_MS: '200', UNDERSTUDY_RESCAN_MS: '600000' };


describe('pause, resume, resync and lag history', { concurrency: false }, () => {
  let primary: TestNode;
  let backup: TestNode;
  let app: BetterSqlite3.Database;
  const dir = tempDir('understudy-pause-');
  const source = join(dir, 'files-alpha');
  const target = join(dir, 'files-beta');
  const dbSource = join(dir, 'shop-alpha.db');
  const dbTarget = join(dir, 'shop-beta.db');
  const ids = { folder: '', db: '' };

  const objectOn = async (node: TestNode, id: string): Promise<ObjectStatus> => (await node.status()).objects.find((o) => o.id === id)!;
  const note = (body: string) => app.prepare('INSERT INTO notes(body) VALUES (?)').run(body);
  const eventOn = (node: TestNode, type: string, object: string, since: number, timeoutMs = 20_000): Promise<EventRecord> =>
    waitFor(`${node.name} to record ${type} for ${object}`, () => node.events.slice(since).find((e) => e.type === type && e.object === object), timeoutMs, 20);

  before(async () => {
    mkdirSync(source, { recursive: true });
    for (let i = 0; i < 10; i++) writeFileSync(join(source, `doc-${i}.txt`), `document ${i}\n`.repeat(500));
    app = new Database(dbSource);
    app.pragma('journal_mode = WAL');
    app.exec('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)');
    for (let i = 0; i < 200; i++) note(`note ${i}`);
    [primary, backup] = await startPair({ primary: Env, backup: Env });
    Object.assign(ids, await protectFolderAndDatabase(primary, { source, target }, { source: dbSource, target: dbTarget }));
  });

  after(async () => {
    app?.close();
    await primary?.destroy();
    await backup?.destroy();
  });

  test('while the application writes, status shows the lag by stage and the throughput, on both nodes', async () => {
    let seen: { primary: ObjectStatus[]; backup: ObjectStatus[] } = { primary: [], backup: [] };
    const writing = (async () => {
      for (let i = 0; i < 40; i++) {
        writeFileSync(join(source, `burst-${i}.bin`), Buffer.alloc(64 * 1024, i));
        note(`burst ${i}`);
        await sleep(50);
      }
    })();
    await waitFor('throughput in the status of both nodes', async () => {
      seen = { primary: (await primary.status()).objects, backup: (await backup.status()).objects };
      const flowing = (objects: ObjectStatus[]) => objects.length === 2 && objects.every((o) => (o.throughput?.bytesPerSec ?? 0) > 0 && (o.throughput?.changesPerSec ?? 0) > 0);
      return flowing(seen.primary) && flowing(seen.backup) ? true : undefined;
    }, 15_000, 100);
    await writing;
    for (const o of [...seen.primary, ...seen.backup]) {
      for (const name of ['capture', 'send', 'apply'] as const) {
        const stage = o.stages?.[name];
        assert.ok(stage && Number.isInteger(stage.lagMs) && stage.lagMs >= 0 && Number.isInteger(stage.changes) && stage.changes >= 0, `${o.id}: ${name} stage ${JSON.stringify(stage)}`);
      }
      assert.ok(o.lagMs >= Math.max(o.stages!.capture.lagMs, o.stages!.send.lagMs, o.stages!.apply.lagMs), `${o.id}: lag is the oldest change in any stage`);
    }
    const folder = seen.primary.find((o) => o.id === ids.folder)!;
    assert.ok(folder.throughput!.bytesPerSec >= 64 * 1024 / 10, `64 KiB files at 20 a second: ${folder.throughput!.bytesPerSec} B/s`);
    const human = await primary.cli('status');
    assert.match(human.stdout, /capture \d+ ms \(\d+\), send \d+ ms \(\d+\), apply \d+ ms \(\d+\); \d+ B\/s, [\d.]+ changes\/s/);
  });

  test('paused objects keep their changes off the backup, say so in status on both nodes, and block a switchover', async () => {
    const since = primary.events.length;
    for (const id of [ids.folder, ids.db]) {
      const paused = await primary.cli('pause', id);
      assert.equal(paused.code, 0, paused.stderr);
      assert.match(paused.stdout, new RegExp(`^Paused ${id}: its changes are captured but not sent to the backup \\(\\d+ pending\\) until 'understudy resume ${id}'\\.\\n$`));
    }
    await eventOn(primary, 'object.paused', ids.folder, since);
    await eventOn(primary, 'object.paused', ids.db, since);
    for (let i = 0; i < 3; i++) writeFileSync(join(source, `while-paused-${i}.txt`), `written while paused ${i}\n`);
    note('written while paused');
    const paused = await waitFor('the paused changes to be counted', async () => {
      const objects = (await primary.status()).objects;
      return objects.every((o) => o.pending > 0) && objects.find((o) => o.id === ids.folder)!.pending >= 3 ? objects : undefined;
    });
    for (const o of paused) {
      assert.equal(o.state, 'paused', o.id);
      assert.equal(o.paused, true, o.id);
    }
    await sleep(2000);
    for (let i = 0; i < 3; i++) assert.ok(!existsSync(join(target, `while-paused-${i}.txt`)), 'nothing written while paused reaches the backup');
    assert.ok(!noteBodies(dbTarget).includes('written while paused'), 'nor any transaction');
    for (const id of [ids.folder, ids.db]) {
      const o = await objectOn(primary, id);
      assert.ok(o.lagMs >= 1500, `${id}: the lag grows while paused (${o.lagMs} ms)`);
      assert.ok(o.stages!.capture.changes + o.stages!.send.changes > 0, `${id}: held before it is sent ${JSON.stringify(o.stages)}`);
      const mirrored = await objectOn(backup, id);
      assert.equal(mirrored.state, 'paused', `${id} on the backup`);
      assert.equal(mirrored.paused, true, `${id} on the backup`);
      assert.ok(mirrored.pending > 0, `${id}: the backup shows what the primary holds back`);
    }
    assertRefused(await primary.cli('resync', ids.folder), { exit: 1, says: new RegExp(`${ids.folder} is paused`), todo: /resume it first/ });
    assertRefused(await primary.cli('pause'), { exit: 2, says: /pause: give exactly one object id/, todo: /understudy --help/ });
    assertRefused(await primary.cli('resume', 'f-nope'), { exit: 1, says: /no protected object 'f-nope'/, todo: /understudy status/ });
    // Pausing is done where the changes come from.
    assertRefused(await backup.cli('pause', ids.folder), { exit: 1, says: new RegExp(`'${ids.folder}' is replicated from the primary`), todo: /run pause on the primary/ });
    const dry = await primary.cli('switchover', '--dry-run');
    assert.equal(dry.code, 1);
    assert.match(dry.stdout, new RegExp(`^BLOCKS {3}${ids.folder} is paused: its changes are not sent to the backup \\('understudy resume ${ids.folder}'\\)$`, 'm'));
    const both = `${ids.folder}, ${ids.db} are paused`;
    assertRefused(await primary.cli('switchover'), { exit: 1, says: new RegExp(`^understudy: switchover refused: ${both}`), todo: new RegExp(`resume them first \\('understudy resume ${ids.folder}'\\)$`) });
    assertRefused(await backup.cli('switchover'), { exit: 1, says: new RegExp(`switchover refused by the primary: ${both}`), todo: /see the primary's events/ });
    assert.equal((await primary.status()).node.role, 'primary');
  });

  test('a pause survives a restart of the primary; a resume sends everything held back', async () => {
    await primary.stop();
    await primary.serve([], Env);
    await Promise.all([waitPeerUp(primary), waitPeerUp(backup)]);
    writeFileSync(join(source, 'after-restart.txt'), 'written after the restart\n');
    note('written after the restart');
    await sleep(1500);
    for (const id of [ids.folder, ids.db]) {
      const o = await objectOn(primary, id);
      assert.equal(o.paused, true, `${id} is still paused after the restart`);
      assert.equal(o.state, 'paused');
    }
    assert.ok(!existsSync(join(target, 'after-restart.txt')));
    assert.ok(!existsSync(join(target, 'while-paused-0.txt')));
    assert.ok(!noteBodies(dbTarget).includes('written while paused'));

    const since = primary.events.length;
    for (const id of [ids.folder, ids.db]) {
      const resumed = await primary.cli('resume', id);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(resumed.stdout, new RegExp(`^Resumed ${id}: sending what was held back to the backup \\(\\d+ pending, [a-z-]+\\)\\.\\n$`));
    }
    const resumed = await eventOn(primary, 'object.resumed', ids.folder, since);
    assert.ok(Number(resumed.pending) >= 4, `the event says what was held back: ${resumed.message}`);
    assert.ok(Number((await eventOn(primary, 'object.resumed', ids.db, since)).pending) >= 1);
    await waitFor('the held-back files on the backup', () => (['while-paused-0.txt', 'while-paused-2.txt', 'after-restart.txt'].every((f) => existsSync(join(target, f))) ? true : undefined), 10_000);
    assert.equal(readFileSync(join(target, 'while-paused-1.txt'), 'utf8'), 'written while paused 1\n');
    await waitFor('the held-back transactions on the backup', () => (noteBodies(dbTarget).includes('written after the restart') ? true : undefined), 10_000);
    assert.deepEqual(noteBodies(dbTarget), noteBodies(dbSource));
    await waitFor('both objects in sync again', async () => {
      const objects = (await primary.status()).objects;
      return objects.every((o) => o.state === 'in-sync' && o.pending === 0 && o.paused === false) ? true : undefined;
    });
  });

  test("resync of a folder puts back a file edited on the backup, and keeps the edited version", async () => {
    const file = join(target, 'doc-3.txt');
    const before = statSync(file);
    // Same size, mtime put back: only reading the content can tell.
    writeFileSync(file, readFileSync(file, 'utf8').replace('document 3', 'DOCUMENT 3'));
    utimesSync(file, before.atime, before.mtime);
    const since = primary.events.length;
    const started = await primary.cli('resync', ids.folder);
    assert.equal(started.code, 0, started.stderr);
    assert.match(started.stdout, new RegExp(`^Resync of ${ids.folder} started: every file is compared with the backup's copy`));
    const done = await eventOn(primary, 'object.resync', ids.folder, since);
    assert.equal(done.result, 'repaired', done.message);
    assert.ok(Number(done.differences) >= 1, done.message);
    assert.equal(readFileSync(file, 'utf8'), readFileSync(join(source, 'doc-3.txt'), 'utf8'));
    const versions = join(backup.home, 'versions', ids.folder);
    const kept = readdirSync(versions, { recursive: true }).map(String).filter((p) => p.endsWith('doc-3.txt'));
    assert.equal(kept.length, 1, 'the edited version is in the versions area');
    assert.match(readFileSync(join(versions, kept[0]!), 'utf8'), /DOCUMENT 3/);
    assertRefused(await backup.cli('resync', ids.folder), { exit: 1, says: /is replicated from the primary/, todo: /run resync on the primary/ });
  });

  test('resync of a database puts back rows changed on the backup, and keeps the changed copy', async () => {
    const tamper = new Database(dbTarget);
    tamper.prepare("UPDATE notes SET body = 'tampered' WHERE id <= 5").run();
    tamper.close();
    const since = primary.events.length;
    const started = await primary.cli('resync', ids.db, '--json');
    assert.equal(started.code, 0, started.stderr);
    const status = JSON.parse(started.stdout) as ObjectStatus;
    assert.equal(status.id, ids.db);
    assert.equal(status.state, 'catching-up', 'it returns once started');
    const done = await eventOn(primary, 'object.resync', ids.db, since);
    assert.equal(done.result, 'repaired', done.message);
    assert.ok(Number(done.differences) >= 1, done.message);
    assert.ok(primary.events.slice(since).some((e) => e.type === 'sqlite.resync' && e.object === ids.db), 'the database resync is recorded');
    assert.deepEqual(noteBodies(dbTarget), noteBodies(dbSource));
    const versions = readdirSync(join(backup.home, 'versions', ids.db), { recursive: true }).map(String);
    assert.ok(versions.some((p) => p.endsWith('database')), `the copy as it was is kept (${versions.join(', ')})`);
  });

  test('history gives the lag samples of the last hour, on both nodes', async () => {
    for (const node of [primary, backup]) {
      const result = await node.cli('history', ids.folder, '--json');
      assert.equal(result.code, 0, result.stderr);
      const history = JSON.parse(result.stdout) as { id: string; intervalMs: number; samples: LagSample[] };
      assert.equal(history.id, ids.folder);
      assert.equal(history.intervalMs, 200);
      assert.ok(history.samples.length >= 5, `${node.name}: ${history.samples.length} samples`);
      const times = history.samples.map((s) => Date.parse(s.at));
      assert.deepEqual(times, [...times].sort((a, b) => a - b), 'oldest first');
      assert.ok(history.samples.some((s) => s.lagMs > 0 && s.pending > 0), `${node.name}: the pause shows in the history`);
      for (const s of history.samples) for (const key of ['lagMs', 'captureMs', 'sendMs', 'applyMs', 'pending', 'bytesPerSec'] as const) assert.ok(Number.isFinite(s[key]) && s[key] >= 0, key);
    }
    const table = await primary.cli('history', ids.db);
    assert.match(table.stdout, /^AT +LAG MS +CAPTURE +SEND +APPLY +PENDING +BYTES\/S\n/);
    assertRefused(await primary.cli('history', 'f-nothing'), { exit: 1, says: /no protected object 'f-nothing'/, todo: /understudy status/ });
  });
});
