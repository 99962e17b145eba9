/**
 * Bad input to the `understudy` command: every refusal exits 1 (or 2 for a usage error) with
 * exactly one line on stderr that says what went wrong, why, and what to do, and leaves the
 * homes, the pairing and the running nodes as they were.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { EventRecord, StatusReport } from '../../src-main/contract/control.js';
import { loadIdentity } from '../../src-main/engine/identity/identity.js';
import { freePortPair, run, runCli, sleep, tempDir, TestNode, type CliResult } from '../support/harness.js';
import { assertRefused, snapshotTree } from '../support/checks.js';

const nodes: TestNode[] = [];
const dirs: string[] = [];
const mounts: string[] = [];

after(async () => {
  for (const mount of mounts.reverse()) await run('umount', [mount]).catch(() => run('umount', ['-l', mount]).catch(() => undefined));
  await Promise.all(nodes.map((node) => node.destroy()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function createNodes(...names: string[]): Promise<TestNode[]> {
  const created = await Promise.all(names.map((name) => TestNode.create(name)));
  nodes.push(...created);
  return created;
}

async function serving(...names: string[]): Promise<TestNode[]> {
  const created = await createNodes(...names);
  await Promise.all(created.map((node) => node.serve()));
  return created;
}

function scratch(prefix: string): string {
  const dir = tempDir(prefix);
  dirs.push(dir);
  return dir;
}

async function pairingCode(node: TestNode): Promise<string> {
  const result = await node.cli('pair-code');
  assert.equal(result.code, 0, result.stderr);
  const code = result.stdout.trim().split('\n').at(-1)!;
  assert.match(code, /^[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$/);
  return code;
}

/** The same code with one character of its secret (the last group) changed. */
function withWrongSecret(code: string): string {
  const last = code.at(-1)!;
  return code.slice(0, -1) + (last === 'A' ? 'B' : 'A');
}

function pair(joiner: TestNode, primary: TestNode | string, code: string): Promise<CliResult> {
  return joiner.cli('pair', '--peer', typeof primary === 'string' ? primary : primary.address, '--code', code);
}

async function events(node: TestNode): Promise<EventRecord[]> {
  const result = await node.cli('events', '--json');
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as EventRecord[];
}

function assertUnpaired(status: StatusReport): void {
  assert.deepEqual(status.peers, [], `${status.node.name} has peers`);
  assert.equal(status.node.role, 'standalone');
  assert.equal(status.node.epoch, 0);
}

function listen(port: number, host = '127.0.0.1'): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.destroy());
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

const StartIt = /start it with 'understudy serve --home /;

describe('refused commands on a home', () => {
  test('status, pair-code and pair on a node that is not running say it is not running, and change nothing', async () => {
    const [node] = await createNodes('idle');
    const before = snapshotTree(node!.home);
    const says = new RegExp(`the node in ${node!.home} is not running`);
    assertRefused(await node!.cli('status'), { exit: 1, says, todo: StartIt });
    assertRefused(await node!.cli('status', '--json'), { exit: 1, says, todo: StartIt });
    assertRefused(await node!.cli('pair-code'), { exit: 1, says, todo: StartIt });
    assertRefused(await pair(node!, '127.0.0.1:7420', 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA'), { exit: 1, says, todo: StartIt });
    assert.deepEqual(snapshotTree(node!.home), before);
  });

  test('serve on a home that does not exist, and init under a parent that does not exist, create nothing', async () => {
    const root = scratch('missing');
    const home = join(root, 'no-such-home');
    assertRefused(await runCli(['serve', '--home', home]), {
      exit: 1,
      says: new RegExp(`the home directory ${home} does not exist`),
      todo: /create a node there with 'understudy init --home .*', or give the right --home/,
    });
    assert.equal(existsSync(home), false, 'serve created the home');

    const nested = join(root, 'no-such-parent', 'home');
    const port = await freePortPair();
    assertRefused(await runCli(['init', '--home', nested, '--name', 'nested', '--listen', `127.0.0.1:${port}`]), {
      exit: 1,
      says: new RegExp(`cannot create ${nested}: its parent directory does not exist`),
      todo: /create the parent directory first, or choose another --home/,
    });
    assert.deepEqual(snapshotTree(root), {}, 'init created something');
  });

  test('a home on a read-only file system: init cannot create it, serve says it is not writable', async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root to mount a read-only tmpfs');
      return;
    }
    // A read-only mount: the home cannot even be created in it.
    const readOnly = scratch('ro');
    await run('mount', ['-t', 'tmpfs', '-o', 'ro,size=4m', 'tmpfs', readOnly]);
    mounts.push(readOnly);
    const port = await freePortPair();
    const inside = join(readOnly, 'x');
    assertRefused(await runCli(['init', '--home', inside, '--name', 'ro', '--listen', `127.0.0.1:${port}`]), {
      exit: 1,
      says: new RegExp(`cannot create ${inside}`),
      todo: /choose a --home in a directory you can write to/,
    });
    assert.equal(existsSync(inside), false);

    // A node created on a writable mount that later turns read-only.
    const mount = scratch('remount');
    await run('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mount]);
    mounts.push(mount);
    const home = join(mount, 'home');
    const init = await runCli(['init', '--home', home, '--name', 'frozen', '--listen', `127.0.0.1:${port}`]);
    assert.equal(init.code, 0, init.stderr);
    await run('mount', ['-o', 'remount,ro', mount]);
    const before = snapshotTree(home);
    assertRefused(await runCli(['serve', '--home', home]), {
      exit: 1,
      says: new RegExp(`the home directory ${home} is not writable`),
      todo: /fix its permissions, or choose another --home/,
    });
    assert.deepEqual(snapshotTree(home), before);
    // Nothing was left listening on the node's ports.
    await close(await listen(port));
    await close(await listen(port + 1));
  });

  test('init twice on one home refuses the second and keeps the first node', async () => {
    const home = join(scratch('twice'), 'home');
    const port = await freePortPair();
    const first = await runCli(['init', '--home', home, '--name', 'first', '--listen', `127.0.0.1:${port}`]);
    assert.equal(first.code, 0, first.stderr);
    const id = first.stdout.trim().split('\n').at(-1)!;
    assert.match(id, /^[A-Z2-7]{13}(-[A-Z2-7]{13}){3}$/);
    const before = snapshotTree(home);

    assertRefused(await runCli(['init', '--home', home, '--name', 'second', '--listen', `127.0.0.1:${port + 10}`]), {
      exit: 1,
      says: new RegExp(`${home} already holds a node`),
      todo: /nothing was changed; use another --home/,
    });
    assert.deepEqual(snapshotTree(home), before);
    assert.equal(loadIdentity(home).nodeId, id);
    const log = await runCli(['events', '--json', '--home', home]);
    assert.equal(log.code, 0, log.stderr);
    const recorded = JSON.parse(log.stdout) as EventRecord[];
    assert.deepEqual(
      recorded.map((e) => [e.type, e.nodeId]),
      [['node.initialized', id]],
    );
  });

  test('serve started twice on one home: the second exits 1 saying it is already running, the first keeps running', async () => {
    const [node] = await serving('twice');
    const pid = node!.pid;
    const lockBefore = readFileSync(join(node!.home, 'understudy.lock'), 'utf8');
    assertRefused(await node!.cli('serve'), {
      exit: 1,
      says: new RegExp(`a node is already running on .*\\(pid ${pid}\\)`),
      todo: /stop it first, or use 'understudy status'/,
    });
    assert.equal(node!.process?.exitCode, null, 'the first serve exited');
    const status = await node!.status();
    assert.equal(status.node.pid, pid);
    assert.equal(readFileSync(join(node!.home, 'understudy.lock'), 'utf8'), lockBefore);
    assert.equal((await events(node!)).filter((e) => e.type === 'node.started').length, 1);
  });

  test('serve exits 1 when its peer port or its heartbeat port is in use, and starts once they are free', async () => {
    const [node] = await createNodes('crowded');
    const before = snapshotTree(node!.home, (path) => path.startsWith('logs'));
    for (const [what, port] of [
      ['peer', node!.port],
      ['heartbeat', node!.port + 1],
    ] as const) {
      const squatter = await listen(port);
      try {
        assertRefused(await node!.cli('serve'), {
          exit: 1,
          says: new RegExp(`the ${what} port ${port} on 127.0.0.1 is already in use`),
          todo: /stop that program, or re-create this node .* on free ports/,
        });
      } finally {
        await close(squatter);
      }
      assert.deepEqual(snapshotTree(node!.home, (path) => path.startsWith('logs')), before, `a failed serve (${what} port) changed the home`);
    }
    // The failed attempts left no lock, no control socket and no listener behind.
    await node!.serve();
    const started = (await events(node!)).filter((e) => e.type === 'node.started');
    assert.equal(started.length, 1, 'a failed serve recorded a start');
  });
});

describe('refused pairings', () => {
  test('a wrong code, a garbage code, a reused code and an unreachable primary: exit 1, nothing pinned', async () => {
    const [primary, backup, third] = await serving('prime', 'second', 'third');
    const code = await pairingCode(primary!);

    assertRefused(await pair(third!, primary!, withWrongSecret(code)), {
      exit: 1,
      says: /refused pairing: the pairing code is wrong/,
      todo: /check the code, or print a new one with 'understudy pair-code' on the primary/,
    });
    assertRefused(await pair(third!, primary!, 'hello'), {
      exit: 1,
      says: /that is not a pairing code/,
      todo: /copy the code exactly as 'understudy pair-code' printed it/,
    });
    const nobody = await freePortPair();
    assertRefused(await pair(third!, `127.0.0.1:${nobody}`, code), {
      exit: 1,
      says: new RegExp(`cannot reach 127\\.0\\.0\\.1:${nobody}`),
      todo: /check the address and that the primary runs 'understudy serve'/,
    });
    assertUnpaired(await third!.status());
    assertUnpaired(await primary!.status());

    // The right code still works after a wrong one (one failure is not a lockout)...
    const paired = await pair(backup!, primary!, code);
    assert.equal(paired.code, 0, paired.stderr);
    // ...and only once.
    assertRefused(await pair(third!, primary!, code), {
      exit: 1,
      says: /refused pairing: .*already (paired|used)/,
      todo: /(the primary already has a backup|a code works once)/,
    });

    assertUnpaired(await third!.status());
    const [p, b] = await Promise.all([primary!.status(), backup!.status()]);
    assert.deepEqual(
      p.peers.map((peer) => peer.id),
      [b.node.id],
    );
    assert.deepEqual(
      b.peers.map((peer) => peer.id),
      [p.node.id],
    );
    assert.equal((await events(third!)).filter((e) => e.type === 'pair.completed').length, 0);
    assert.equal((await events(primary!)).filter((e) => e.type === 'pair.completed').length, 1);
  });

  test('a paired node neither pairs again nor prints a pairing code', async () => {
    const [primary, backup, spare] = await serving('paired-p', 'paired-b', 'spare');
    const paired = await pair(backup!, primary!, await pairingCode(primary!));
    assert.equal(paired.code, 0, paired.stderr);
    const [p0, b0] = await Promise.all([primary!.status(), backup!.status()]);

    assertRefused(await pair(backup!, primary!, await pairingCode(spare!)), {
      exit: 1,
      says: /this node is already paired with 'paired-p'/,
      todo: /a paired node cannot pair again/,
    });
    // The primary still prints a code, for the pair's witness; a second backup is refused with it.
    const forWitness = await primary!.cli('pair-code');
    assert.equal(forWitness.code, 0, forWitness.stderr);
    assertRefused(await pair(spare!, primary!, forWitness.stdout.trim().split('\n').at(-1)!), {
      exit: 1,
      says: /already paired with 'paired-b'/,
      todo: /the primary already has a backup/,
    });
    assertRefused(await backup!.cli('pair-code'), {
      exit: 1,
      says: /this node is already paired with 'paired-p'/,
      todo: /a pair has one primary and one backup/,
    });

    const [p1, b1] = await Promise.all([primary!.status(), backup!.status()]);
    for (const [now, then] of [
      [p1, p0],
      [b1, b0],
    ] as const) {
      assert.equal(now.node.role, then.node.role);
      assert.equal(now.node.epoch, 1);
      assert.deepEqual(
        now.peers.map((peer) => [peer.id, peer.pairedAt]),
        then.peers.map((peer) => [peer.id, peer.pairedAt]),
      );
    }
    assertUnpaired(await spare!.status());
  });

  test("a code printed by another node is refused before anything is said, and stays usable", async () => {
    const [issuer, other, joiner] = await serving('issuer', 'other', 'joiner');
    const code = await pairingCode(issuer!);
    assertRefused(await pair(joiner!, other!, code), {
      exit: 1,
      says: new RegExp(`the node at ${other!.address.replace(/\./g, '\\.')} is not the node that printed this code`),
      todo: /check the address, or print a new code on the primary/,
    });
    for (const node of [issuer!, other!, joiner!]) assertUnpaired(await node.status());
    // The other node never saw a pairing attempt, and the code was not spent.
    assert.equal((await events(other!)).filter((e) => e.type.startsWith('pair.')).length, 0);
    const paired = await pair(joiner!, issuer!, code);
    assert.equal(paired.code, 0, paired.stderr);
  });

  test('repeated wrong codes are throttled, even for the right code, until a new code is issued', async () => {
    const [primary, joiner] = await serving('throttle-p', 'throttle-j');
    const code = await pairingCode(primary!);
    const wrong = withWrongSecret(code);

    // Five wrong codes; when an attempt is throttled on the way, wait out the pause it names.
    let wrongAnswers = 0;
    let throttledOnTheWay = 0;
    for (let attempt = 0; wrongAnswers < 5; attempt++) {
      assert.ok(attempt < 15, 'too many attempts');
      const result = await pair(joiner!, primary!, wrong);
      const line = assertRefused(result, { exit: 1, says: /refused pairing: (the pairing code is wrong|too many wrong pairing codes)/, todo: /./ });
      const pause = /too many wrong pairing codes; try again in (\d+) s/.exec(line);
      if (pause) {
        throttledOnTheWay += 1;
        await sleep(Number(pause[1]) * 1000 + 100);
      } else wrongAnswers += 1;
    }
    // The fifth wrong code started a 4 s pause: the right code is refused too.
    assertRefused(await pair(joiner!, primary!, code), {
      exit: 1,
      says: /refused pairing: too many wrong pairing codes; try again in \d+ s/,
      todo: /wait, then try again with the right code/,
    });
    assertUnpaired(await joiner!.status());
    assertUnpaired(await primary!.status());

    // A new code from the admin ends the pause.
    const fresh = await pairingCode(primary!);
    const paired = await pair(joiner!, primary!, fresh);
    assert.equal(paired.code, 0, `${paired.stderr} (throttled ${throttledOnTheWay} times on the way)`);
    assert.equal((await primary!.status()).peers[0]?.id, (await joiner!.status()).node.id);
  });
});

describe('usage errors exit 2', () => {
  const Help = /see 'understudy --help'/;

  test('an unknown command, an unknown flag, pair without --code, init with a bad --listen, no home', async () => {
    const root = scratch('usage');
    const home = join(root, 'home');
    mkdirSync(home);
    assertRefused(await runCli(['frobnicate', '--home', home]), { exit: 2, says: /unknown command 'frobnicate'/, todo: Help });
    assertRefused(await runCli(['status', '--bogus', '--home', home]), { exit: 2, says: /status: Unknown option '--bogus'/, todo: Help });
    assertRefused(await runCli(['pair', '--peer', '127.0.0.1:7420', '--home', home]), { exit: 2, says: /pair: --code is required/, todo: Help });
    const fresh = join(root, 'fresh');
    assertRefused(await runCli(['init', '--name', 'x', '--listen', 'nonsense', '--home', fresh]), {
      exit: 2,
      says: /init: --listen 'nonsense' is not HOST:PORT/,
      todo: Help,
    });
    assert.equal(existsSync(fresh), false, 'init with a bad --listen created the home');
    for (const command of ['status', 'init', 'serve', 'pair-code', 'events']) {
      assertRefused(await runCli([command], { UNDERSTUDY_HOME: undefined }), {
        exit: 2,
        says: /no home directory given: pass --home DIR or set UNDERSTUDY_HOME/,
        todo: Help,
      });
    }
    assert.deepEqual(Object.keys(snapshotTree(root)), ['home/'], 'a refused command created something');
  });
});
