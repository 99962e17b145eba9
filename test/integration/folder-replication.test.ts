/**
 * Two real nodes replicate a folder through a randomized workload — creates, appends,
 * in-place rewrites, truncates, renames of files and folders, deletes, chmods, symlinks and
 * editors' write-temp-then-rename — with kill -9 of either node in the middle, and the trees
 * end byte-identical (path, type, size, mode, sha256, link target).
 *
 * Replay a run with UNDERSTUDY_WORKLOAD_SEED=<seed printed in the diagnostics>.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { ObjectStatus } from '../../src-main/contract/control.js';
import { sleep, startPair, tempDir, TestNode, waitFor, waitPeerUp } from '../support/harness.js';
import { Random } from '../support/random.js';
import { findTemps, manifest, manifestDiff } from '../support/tree.js';
import { runWorkload } from '../support/workload.js';

const Seed = Number(process.env.UNDERSTUDY_WORKLOAD_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ConvergeMs = 60_000;


function populate(root: string, random: Random, files: number): void {
  for (let i = 0; i < files; i++) {
    const dir = join(root, `dir${i % 7}`, `sub${i % 3}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `file${i}.dat`), random.bytes(random.int(0, 64 * 1024)));
  }
}


describe('folder replication under a randomized workload with kills', { concurrency: false }, () => {
  const random = new Random(Seed);
  let primary: TestNode;
  let backup: TestNode;
  let work: string;
  let source: string;
  let target: string;
  let objectId: string;

  async function objectStatus(node: TestNode): Promise<ObjectStatus | undefined> {
    return (await node.status()).objects.find((o) => o.id === objectId);
  }

  /** Waits until the backup's tree equals the primary's and the primary reports in-sync. */
  async function converge(what: string): Promise<void> {
    let lastDiff: string[] = [];
    try {
      await waitFor(
        what,
        async () => {
          const status = await objectStatus(primary);
          if (status?.state !== 'in-sync' || status.pending !== 0) return undefined;
          lastDiff = manifestDiff(manifest(source), manifest(target));
          return lastDiff.length === 0 ? true : undefined;
        },
        ConvergeMs,
        100,
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; seed ${Seed}; differences: ${lastDiff.slice(0, 15).join('; ')}`);
    }
  }

  before(async () => {
    work = tempDir('folder');
    source = join(work, 'source');
    target = join(work, 'target');
    mkdirSync(source);
    [primary, backup] = await startPair();
  });
  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  test(`initial sync while the folder is in use, with kill -9 of the backup mid-sync (seed ${Seed})`, async () => {
    populate(source, random, 400);
    writeFileSync(join(source, 'large.bin'), random.bytes(24 * 1024 * 1024));
    const protect = await primary.cli('protect', 'folder', source, '--to', target);
    assert.equal(protect.code, 0, protect.stderr);
    objectId = protect.stdout.trim().split('\n').at(-1)!;
    assert.match(objectId, /^f-[0-9a-f]{10}$/);
    runWorkload(source, random, 20);
    await sleep(random.int(50, 400));
    await backup.kill();
    runWorkload(source, random, 20);
    await backup.serve();
    await converge('the initial sync to converge after the backup was killed');
    assert.deepEqual(findTemps(target), [], 'no temp files are left behind');
  });

  test(`random workload with kill -9 of either node in the middle ends byte-identical (seed ${Seed})`, async () => {
    for (let round = 0; round < 6; round++) {
      runWorkload(source, random, 30);
      if (round % 3 === 2) {
        await converge(`round ${round} to converge`);
        continue;
      }
      const victim = round % 3 === 0 ? backup : primary;
      // A large file in flight when the kill lands.
      writeFileSync(join(source, `big-${round}.bin`), random.bytes(16 * 1024 * 1024));
      await sleep(random.int(20, 300));
      await victim.kill();
      runWorkload(source, random, 15); // the primary is down for some of these: the restart's rescan must find them
      await victim.serve();
      await Promise.all([waitPeerUp(primary), waitPeerUp(backup)]);
    }
    await converge('the workload to converge');
    assert.deepEqual(findTemps(target), [], 'no temp files are left behind');
  });

  test('in sync: status shows no lag on both sides; overwritten and deleted versions were kept outside DEST', async () => {
    const [ours, theirs] = await Promise.all([objectStatus(primary), waitFor('the backup to hear in-sync', async () => {
      const status = await objectStatus(backup);
      return status?.state === 'in-sync' ? status : undefined;
    })]);
    assert.equal(ours?.kind, 'folder');
    assert.equal(ours?.source, source);
    assert.equal(ours?.target, target);
    assert.equal(ours?.lagMs, 0);
    assert.equal(theirs.pending, 0);
    assert.equal(theirs.target, target);
    const versions = join(backup.home, 'versions', objectId);
    assert.ok(existsSync(versions) && readdirSync(versions).length > 0, 'the versions area holds earlier versions');
  });

  test('a few bytes changed in the middle of a 24 MiB file travel as the changed blocks, not the file nor its block list', async () => {
    // A file of its own: the random workload may have cut or grown the others.
    const big = join(source, 'grouped-delta.bin');
    writeFileSync(big, random.bytes(24 * 1024 * 1024));
    await converge('grouped-delta.bin in place');
    const before = (await backup.status()).peers[0]!.linkBytes;
    const fd = openSync(big, 'r+');
    for (const at of [3 * 1024 * 1024 + 17, 20 * 1024 * 1024 + 5]) writeSync(fd, Buffer.from('edited'), 0, 6, at);
    closeSync(fd);
    await converge('the edit to arrive');
    const after = (await backup.status()).peers[0]!.linkBytes;
    const moved = after.sent + after.received - before.sent - before.received;
    // Two 16 KiB blocks, plus the group hashes (1,536 blocks / 64 = 24 groups) and two groups' block hashes;
    // the flat block list alone would be 24 KiB, the file 24 MiB.
    assert.ok(moved < 2 * 16 * 1024 + 16 * 1024, `${moved} bytes moved for a two-block edit`);
  });

  test('unprotect stops replication and leaves the backup copy in place', async () => {
    const before = manifest(target);
    const result = await primary.cli('unprotect', objectId);
    assert.equal(result.code, 0, result.stderr);
    writeFileSync(join(source, 'after-unprotect.txt'), 'not replicated');
    await waitFor('the backup to drop the object', async () => ((await backup.status()).objects.length === 0 ? true : undefined));
    await sleep(300);
    assert.deepEqual(manifestDiff(before, manifest(target)), []);
    assert.equal((await primary.status()).objects.length, 0);
  });
});
