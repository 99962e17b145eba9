/**
 * Planned switchover between two real nodes that protect a folder and a SQLite database:
 * refused while the backup is away, run from the backup and from the primary, with the
 * application's hooks; nothing written before the switchover is lost, changes flow the other
 * way after it, and the two nodes are never primary at the same time.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { EventRecord, StatusReport } from '../../src-main/contract/control.js';
import { startPair, tempDir, TestNode, waitFor, waitPeerUp } from '../support/harness.js';
import { assertRefused } from '../support/checks.js';

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;

async function allInSync(node: TestNode, count: number): Promise<StatusReport> {
  return waitFor(
    `${node.name}: ${count} objects in-sync`,
    async () => {
      const status = await node.status();
      return status.objects.length === count && status.objects.every((o) => o.state === 'in-sync' && o.pending === 0) ? status : undefined;
    },
    30_000,
  );
}

function rows(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM notes').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Intervals (by the test's clock) during which each node reported itself primary, from its events. */
function primaryIntervals(events: EventRecord[]): { from: number; to: number }[] {
  const intervals: { from: number; to: number }[] = [];
  let since: number | null = null;
  for (const event of events) {
    const at = Date.parse(event.at);
    if (event.type === 'role.promoted' || (event.type === 'pair.completed' && event.role === 'primary')) since = at;
    if (event.type === 'role.demoted' && since !== null) {
      intervals.push({ from: since, to: at });
      since = null;
    }
  }
  if (since !== null) intervals.push({ from: since, to: Number.POSITIVE_INFINITY });
  return intervals;
}

describe('switchover', { concurrency: false }, () => {
  let primary: TestNode;
  let backup: TestNode;
  const dir = tempDir('understudy-switchover-');
  const filesA = join(dir, 'files-alpha');
  const filesB = join(dir, 'files-beta');
  const dbA = join(dir, 'alpha.db');
  const dbB = join(dir, 'beta.db');
  const hookLog = join(dir, 'hooks.log');

  before(async () => {
    mkdirSync(filesA);
    for (let i = 0; i < 20; i++) writeFileSync(join(filesA, `doc-${i}.txt`), `document ${i}\n`.repeat(50));
    const db = new Database(dbA);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)');
    db.prepare('INSERT INTO notes(body) VALUES (?)').run('first');
    db.close();
    [primary, backup] = await startPair();
    for (const node of [primary, backup]) {
      const set = await node.cli('hooks', 'set', '--start', `echo "start ${node.name} $UNDERSTUDY_ROLE $UNDERSTUDY_EPOCH" >> ${hookLog}`, '--stop', `echo "stop ${node.name} $UNDERSTUDY_ROLE" >> ${hookLog}`);
      assert.equal(set.code, 0, set.stderr);
    }
    assert.equal((await primary.cli('protect', 'folder', filesA, '--to', filesB)).code, 0);
    assert.equal((await primary.cli('protect', 'sqlite', dbA, '--to', dbB)).code, 0);
    await allInSync(primary, 2);
  });

  after(async () => {
    await primary?.destroy();
    await backup?.destroy();
  });

  test('refused with one clear line while the backup is away', async () => {
    await backup.stop();
    await waitFor('alpha to see beta down', async () => ((await primary.status()).peers[0]?.state === 'down' ? true : undefined));
    assertRefused(await primary.cli('switchover'), { exit: 1, says: /switchover refused: 'beta' is not reachable/, todo: /both nodes are up/ });
    assert.equal((await primary.status()).node.role, 'primary', 'nothing changed');
    await backup.serve();
    await Promise.all([waitPeerUp(primary), waitPeerUp(backup)]);
    await allInSync(primary, 2);
  });

  test('run on the backup: the last changes arrive, the roles swap, the hooks run, changes flow back', async () => {
    // Written just before the switchover: they must be on the new primary.
    writeFileSync(join(filesA, 'last-minute.txt'), 'written just before the switchover');
    const db = new Database(dbA);
    db.prepare('INSERT INTO notes(body) VALUES (?)').run('just before');
    db.close();
    const result = await backup.cli('switchover', '--json');
    assert.equal(result.code, 0, result.stderr);
    const done = JSON.parse(result.stdout) as { ms: number; role: string; epoch: number };
    assert.equal(done.role, 'primary');
    assert.equal(done.epoch, 2);
    assert.ok(done.ms < 5000, `took ${done.ms} ms`);
    const [a, b] = await Promise.all([primary.status(), backup.status()]);
    assert.deepEqual([a.node.role, a.node.epoch, b.node.role, b.node.epoch], ['backup', 2, 'primary', 2]);
    assert.equal(readFileSync(join(filesB, 'last-minute.txt'), 'utf8'), 'written just before the switchover');
    assert.equal(rows(dbB), 2, 'the row written just before is on the new primary');
    assert.deepEqual(readFileSync(hookLog, 'utf8').trim().split('\n'), ['stop alpha primary', 'start beta primary 2']);

    // The new primary's changes reach the old one.
    writeFileSync(join(filesB, 'from-beta.txt'), 'written on beta');
    const dbOnB = new Database(dbB);
    dbOnB.prepare('INSERT INTO notes(body) VALUES (?)').run('on beta');
    dbOnB.close();
    await allInSync(backup, 2);
    await waitFor('from-beta.txt on alpha', () => (existsSync(join(filesA, 'from-beta.txt')) ? true : undefined));
    assert.equal(readFileSync(join(filesA, 'from-beta.txt'), 'utf8'), 'written on beta');
    await waitFor('3 rows on alpha', () => (rows(dbA) === 3 ? true : undefined));
  });

  test('run on the primary: the roles swap back, and the nodes were never primary at once', async () => {
    const result = await backup.cli('switchover');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /this node is now the backup \(epoch 3\)/);
    assert.equal((await primary.status()).node.role, 'primary');
    await allInSync(primary, 2);
    const a = primaryIntervals(primary.events);
    const b = primaryIntervals(backup.events);
    for (const x of a) for (const y of b) assert.ok(x.to <= y.from || y.to <= x.from, `alpha primary ${JSON.stringify(x)} overlaps beta ${JSON.stringify(y)}`);
    assert.ok(primary.events.some((e) => e.type === 'switchover.done'));
  });

  test("refused when the backup's index does not match at the drain point; an audit sets it right", async () => {
    // As a bug or a restored store would leave it: the backup's index has a size wrong.
    const folder = (await primary.status()).objects.find((o) => o.kind === 'folder')!;
    const store = new Database(join(backup.home, 'understudy.db'));
    store.pragma('busy_timeout = 5000');
    store.prepare('UPDATE folder_entries SET size = size + 1 WHERE object_id = ? AND path = ?').run(folder.id, 'doc-4.txt');
    store.close();
    assertRefused(await primary.cli('switchover'), { exit: 1, says: /switchover refused: the backup's copy does not match at the drain point: f-[0-9a-f]+: the backup's index differs/, todo: /audit it, then switch over/ });
    assert.deepEqual([(await primary.status()).node.role, (await backup.status()).node.role], ['primary', 'backup'], 'nothing changed');
    const audited = await primary.cli('audit', folder.id, '--json');
    assert.equal(audited.code, 0, audited.stderr);
    assert.equal(JSON.parse(audited.stdout).objects[0].result, 'repaired');
    const switched = await primary.cli('switchover');
    assert.equal(switched.code, 0, switched.stderr);
  });
});
