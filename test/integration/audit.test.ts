/**
 * Audits between real nodes: the backup's copy is damaged by hand in each way a disk or a
 * person can (a flipped byte whose mtime is put back, a deleted file, a changed mode, a
 * corrupted database page, a truncated database), and each damage is found and repaired by
 * the continuous audit by itself, with an event, the damaged version kept; `understudy audit`
 * reports clean copies, repairs on demand, and says so in JSON and in status; `switchover
 * --dry-run` says whether a switchover would go ahead, and what would block it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, statSync, truncateSync, unlinkSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { AuditOutcome, EventRecord } from '../../src-main/contract/control.js';
import { protectFolderAndDatabase, startPair, tempDir, TestNode, waitFor } from '../support/harness.js';
import { noteBodies } from '../support/sqlite-workload.js';

const Database = createRequire(import.meta.url)('better-sqlite3') as typeof BetterSqlite3;
/** The continuous audit every second (default: every minute), so damage is found quickly. */
const Env = { UNDERSTUDY_RESCAN_MS: '1000' };


function integrity(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

describe('audit and self-repair', { concurrency: false }, () => {
  let primary: TestNode;
  let backup: TestNode;
  const dir = tempDir('audit-');
  const source = join(dir, 'files-alpha');
  const target = join(dir, 'files-beta');
  const dbSource = join(dir, 'shop-alpha.db');
  const dbTarget = join(dir, 'shop-beta.db');
  const ids: { folder: string; db: string } = { folder: '', db: '' };

  async function repairedEvent(object: string, since: number): Promise<EventRecord> {
    return waitFor(`the backup to repair ${object} by itself`, () => backup.events.slice(since).find((e) => e.type === 'audit.repaired' && e.object === object), 20_000, 20);
  }

  async function audit(node: TestNode, ...args: string[]): Promise<{ code: number; objects: AuditOutcome[]; stderr: string }> {
    const result = await node.cli('audit', ...args, '--json');
    return { code: result.code, objects: result.stdout ? (JSON.parse(result.stdout) as { objects: AuditOutcome[] }).objects : [], stderr: result.stderr };
  }

  before(async () => {
    mkdirSync(join(source, 'docs'), { recursive: true });
    for (let i = 0; i < 30; i++) writeFileSync(join(source, 'docs', `doc-${i}.txt`), `document ${i}\n`.repeat(2000));
    writeFileSync(join(source, 'run.sh'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
    const db = new Database(dbSource);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)');
    const insert = db.prepare('INSERT INTO notes(body) VALUES (?)');
    for (let i = 0; i < 2000; i++) insert.run(`note ${i} ${'x'.repeat(100)}`);
    db.close();
    [primary, backup] = await startPair({ primary: Env, backup: Env });
    Object.assign(ids, await protectFolderAndDatabase(primary, { source, target }, { source: dbSource, target: dbTarget }));
    await waitFor('the copy of the database', () => (noteBodies(dbTarget).length === 2000 ? true : undefined), 10_000);
  });

  after(async () => {
    await primary?.destroy();
    await backup?.destroy();
  });

  test('audit of clean copies, from either node: nothing differs; exit 0; status shows the last audit', async () => {
    for (const node of [primary, backup]) {
      const result = await audit(node);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.objects.map((o) => [o.id, o.result, o.differences, o.repaired]).sort(), [[ids.db, 'clean', 0, 0], [ids.folder, 'clean', 0, 0]].sort());
    }
    const status = await primary.status();
    for (const object of status.objects) assert.equal(object.lastAudit?.result, 'clean', `${object.id}'s lastAudit on the primary`);
    // Audited, in sync, both up: a switchover would go ahead (without hooks or a witness, with warnings).
    for (const node of [primary, backup]) {
      const dry = await node.cli('switchover', '--dry-run');
      assert.equal(dry.code, 0, dry.stdout + dry.stderr);
      assert.match(dry.stdout, /^ok {7}'(alpha|beta)' is up and its data link connected$/m);
      assert.match(dry.stdout, /WARNING {2}no witness/);
      assert.match(dry.stdout, /Ready: a switchover would go ahead now\./);
    }
    assert.equal((await primary.status()).node.role, 'primary', 'a dry run changes nothing');
  });

  test('a flipped byte whose mtime was put back is found by the scrub and repaired, the damaged version kept', async () => {
    const since = backup.events.length;
    const file = join(target, 'docs', 'doc-7.txt');
    const before = statSync(file);
    const fd = openSync(file, 'r+');
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, 5000);
    writeSync(fd, Buffer.from([byte[0]! ^ 0x01]), 0, 1, 5000);
    closeSync(fd);
    utimesSync(file, before.atime, before.mtime);
    const event = await repairedEvent(ids.folder, since);
    assert.match(event.message, /docs\/doc-7\.txt/);
    assert.equal(readFileSync(file, 'utf8'), readFileSync(join(source, 'docs', 'doc-7.txt'), 'utf8'));
    const versions = join(backup.home, 'versions', ids.folder);
    const kept = readdirSync(versions, { recursive: true }).map(String).filter((p) => p.endsWith('doc-7.txt'));
    assert.equal(kept.length, 1, 'the damaged version is in the versions area');
  });

  test('a deleted file and a changed mode are found and repaired by themselves', async () => {
    const since = backup.events.length;
    unlinkSync(join(target, 'docs', 'doc-3.txt'));
    chmodSync(join(target, 'run.sh'), 0o600);
    await waitFor('both repaired', () => {
      try {
        return readFileSync(join(target, 'docs', 'doc-3.txt'), 'utf8') === readFileSync(join(source, 'docs', 'doc-3.txt'), 'utf8') && (statSync(join(target, 'run.sh')).mode & 0o777) === 0o755 ? true : undefined;
      } catch {
        return undefined;
      }
    }, 20_000);
    // The event follows the repair by a moment.
    await waitFor('audit.repaired events naming both', () => {
      const said = backup.events.slice(since).filter((e) => e.type === 'audit.repaired' && e.object === ids.folder).map((e) => e.message).join(' ');
      return /doc-3\.txt/.test(said) && /run\.sh/.test(said) ? true : undefined;
    }, 5000);
  });

  test("an index that drifted from the primary's is found by the Merkle comparison and set right", async () => {
    // As a bug or a restored store would leave it: the backup's index says doc-5 is 1 byte longer.
    const store = new Database(join(backup.home, 'understudy.db'));
    store.pragma('busy_timeout = 5000');
    store.prepare('UPDATE folder_entries SET size = size + 1 WHERE object_id = ? AND path = ?').run(ids.folder, 'docs/doc-5.txt');
    store.close();
    const result = await audit(backup, ids.folder);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.objects[0]?.result, 'repaired', JSON.stringify(result.objects));
    assert.match(result.objects[0]?.detail ?? '', /docs\/doc-5\.txt/);
    const again = await audit(backup, ids.folder);
    assert.equal(again.objects[0]?.result, 'clean', 'the index matches the primary again');
  });

  test('a corrupted database page is found and rewritten from the primary', async () => {
    const since = backup.events.length;
    const pageSize = 4096;
    // A page in the middle of the table's data (the copy is checkpointed: it lives in the main file).
    const fd = openSync(dbTarget, 'r+');
    writeSync(fd, Buffer.alloc(600, 0xee), 0, 600, 5 * pageSize + 100);
    closeSync(fd);
    const event = await repairedEvent(ids.db, since);
    assert.match(event.message, /page\(s\) of the copy/);
    assert.ok(Number(event.differences) >= 1);
    assert.equal(integrity(dbTarget), 'ok');
    assert.deepEqual(noteBodies(dbTarget), noteBodies(dbSource));
  });

  test('a truncated database is found and completed from the primary', async () => {
    const since = backup.events.length;
    truncateSync(dbTarget, Math.floor(statSync(dbTarget).size / 2));
    await repairedEvent(ids.db, since);
    assert.equal(integrity(dbTarget), 'ok');
    assert.deepEqual(noteBodies(dbTarget), noteBodies(dbSource));
  });

  test("a rehearsal runs the backup's check hook against a snapshot of its copies, then removes the snapshot", async () => {
    const check = `head -c 15 "$UNDERSTUDY_SNAPSHOT/${ids.db}.db" && echo && grep -c document "$UNDERSTUDY_SNAPSHOT/${ids.folder}/docs/doc-1.txt" && test "$UNDERSTUDY_REHEARSAL" = 1`;
    assert.equal((await backup.cli('hooks', 'set', '--check', check)).code, 0);
    const result = await backup.cli('switchover', '--rehearse', '--json');
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const rehearsal = JSON.parse(result.stdout) as { ok: boolean; output: string; objects: { id: string; path: string }[] };
    assert.equal(rehearsal.ok, true);
    assert.match(rehearsal.output, /^SQLite format 3\n2000\n$/);
    assert.deepEqual(rehearsal.objects.map((o) => o.id).sort(), [ids.db, ids.folder].sort());
    assert.deepEqual(readdirSync(join(backup.home, 'rehearsal')), [], 'the snapshot is gone');
    assert.deepEqual(noteBodies(dbTarget), noteBodies(dbSource), 'the live copy is untouched');
    // A check that fails against the snapshot: exit 1, and the primary stays the primary.
    assert.equal((await backup.cli('hooks', 'set', '--check', 'echo "app cannot start: no config" && exit 3')).code, 0);
    const failed = await backup.cli('switchover', '--rehearse');
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /the check hook FAILED .*exit 3/);
    assert.match(failed.stdout, /app cannot start: no config/);
    assert.equal((await primary.status()).node.role, 'primary');
    assert.equal((await primary.cli('switchover', '--rehearse')).code, 1, 'a rehearsal runs on the backup');
    assert.equal((await backup.cli('hooks', 'set', '--check', '')).code, 0);
  });

  test('audit --scrub on demand repairs and reports in JSON; exit 1 when the backup is away', async () => {
    // Damage and audit at once, before the continuous audit gets there.
    const file = join(target, 'docs', 'doc-11.txt');
    const stat = statSync(file);
    writeFileSync(file, readFileSync(file, 'utf8').replace('document 11', 'DOCUMENT 11'));
    utimesSync(file, stat.atime, stat.mtime);
    const result = await audit(primary, ids.folder, '--scrub');
    assert.equal(result.code, 0, result.stderr);
    const [outcome] = result.objects;
    // Either this audit found it or the continuous one did a moment before: the copy is right either way.
    assert.ok(outcome && (outcome.result === 'repaired' || outcome.result === 'clean'), JSON.stringify(outcome));
    assert.equal(outcome!.scope, 'index+metadata+content');
    assert.equal(readFileSync(file, 'utf8'), readFileSync(join(source, 'docs', 'doc-11.txt'), 'utf8'));
    await backup.stop();
    const dry = await primary.cli('switchover', '--dry-run', '--json');
    assert.equal(dry.code, 1);
    const readiness = JSON.parse(dry.stdout) as { ready: boolean; checks: { level: string; detail: string }[] };
    assert.equal(readiness.ready, false);
    assert.ok(readiness.checks.some((c) => c.level === 'blocker' && /'beta' is (down|suspect)/.test(c.detail)), JSON.stringify(readiness.checks));
    const away = await primary.cli('audit');
    assert.equal(away.code, 1);
    assert.match(away.stderr, /^understudy: the audit could not start: the backup is not connected: check that both nodes are up/);
    await backup.serve([], Env);
  });
});
