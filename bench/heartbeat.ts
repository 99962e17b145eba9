/**
 * npm run bench:heartbeat — the pulse of a pair on loopback at default settings:
 * time from `serve` to peer `up`, heartbeat RTT p50/p99, and time to a `down` verdict after
 * kill -9 and SIGSTOP. Anchor: keepalived at its default settings (adverts every 1 s),
 * measured in the same run on two network namespaces (bench/keepalived-anchor.ts): the time
 * from the same fault on its master to its backup taking over. Needs root for the anchor;
 * without it the anchor column says why it is missing.
 *
 * Options: --rounds N (default 5), --rtt-seconds S (default 30).
 */
import { pairNodes, TestNode, waitFor } from '../test/support/harness.js';
import { measureKeepalived, type KeepalivedResult } from './keepalived-anchor.js';
import { median, percentile, printTable, writeResults } from './stats.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const rounds = option('rounds', 5);
const rttSeconds = option('rtt-seconds', 30);

async function waitUp(node: TestNode): Promise<void> {
  await waitFor(`${node.name} up`, async () => ((await node.peerState()) === 'up' ? true : undefined), 10_000);
}

async function main(): Promise<void> {
  const [primary, backup] = await Promise.all([TestNode.create('bench-a'), TestNode.create('bench-b')]);
  try {
    await Promise.all([primary.serve(), backup.serve()]);
    const pairStart = Date.now();
    const paired = await pairNodes(primary, backup);
    if (paired.code !== 0) throw new Error(paired.stderr);
    await Promise.all([waitUp(primary), waitUp(backup)]);
    const pairToUp = Date.now() - pairStart;

    // serve -> up: restart the backup; time from spawning serve to its own peer.up event.
    const serveToUp: number[] = [];
    for (let i = 0; i < rounds; i++) {
      await backup.stop();
      await waitFor('primary sees down', async () => ((await primary.peerState()) === 'down' ? true : undefined));
      const spawnedAt = Date.now();
      await backup.serve();
      // The node may report up before the harness subscribed; status tells when it came up.
      await waitUp(backup);
      const status = await backup.status();
      serveToUp.push(Date.parse(status.peers[0]!.stateSince) - spawnedAt);
      await waitUp(primary);
    }

    // RTT at the default 200 ms interval, as each side measures it.
    await new Promise((resolve) => setTimeout(resolve, rttSeconds * 1000));
    const rtt = await Promise.all([primary.status(), backup.status()]).then((s) => s.map((r) => r.peers[0]!.rtt!));

    // Time to down after kill -9 and SIGSTOP of the backup, as the primary sees it.
    const killToDown: number[] = [];
    const stopToDown: number[] = [];
    for (let i = 0; i < rounds; i++) {
      let mark = primary.events.length;
      let at = Date.now();
      await backup.kill();
      killToDown.push(Date.parse((await primary.waitForEvent('peer.down', mark)).at) - at);
      await backup.serve();
      await Promise.all([waitUp(primary), waitUp(backup)]);

      mark = primary.events.length;
      at = Date.now();
      backup.signal('SIGSTOP');
      stopToDown.push(Date.parse((await primary.waitForEvent('peer.down', mark)).at) - at);
      backup.signal('SIGCONT');
      await Promise.all([waitUp(primary), waitUp(backup)]);
    }

    const keepalived = {
      kill: await measureKeepalived({ rounds, kind: 'kill' }),
      sigstop: await measureKeepalived({ rounds, kind: 'sigstop' }),
    };
    const anchor = (ours: number[], theirs: KeepalivedResult) =>
      theirs.available
        ? `keepalived ${median(theirs.detectMs)} (ours x${(median(ours) / median(theirs.detectMs)).toFixed(3)})`
        : `keepalived n/a: ${theirs.reason}`;
    const rows = [
      { measure: 'pair command -> both up (ms)', runs: 1, median: pairToUp, max: pairToUp, goal: '< 2000', anchor: '' },
      { measure: 'serve -> peer up (ms)', runs: serveToUp.length, median: median(serveToUp), max: Math.max(...serveToUp), goal: '< 2000', anchor: '' },
      {
        measure: 'kill -9 -> down (ms)',
        runs: killToDown.length,
        median: median(killToDown),
        max: Math.max(...killToDown),
        goal: '< 1000',
        anchor: anchor(killToDown, keepalived.kill),
      },
      {
        measure: 'SIGSTOP -> down (ms)',
        runs: stopToDown.length,
        median: median(stopToDown),
        max: Math.max(...stopToDown),
        goal: '< 1000',
        anchor: anchor(stopToDown, keepalived.sigstop),
      },
    ];
    printTable(rows);
    console.log('');
    printTable(
      ['primary', 'backup'].map((side, i) => ({
        'heartbeat RTT as seen by': side,
        samples: rtt[i]!.samples,
        'p50 (us)': rtt[i]!.p50Us,
        'p99 (us)': rtt[i]!.p99Us,
      })),
    );
    const path = writeResults('heartbeat', {
      date: new Date().toISOString(),
      settings: { heartbeatIntervalMs: 200, rounds, rttSeconds },
      pairToUpMs: pairToUp,
      serveToUpMs: serveToUp,
      killToDownMs: killToDown,
      stopToDownMs: stopToDown,
      rtt: { primary: rtt[0], backup: rtt[1] },
      anchor: { name: 'keepalived 2.x, default advert_int 1 s, fault on master -> backup MASTER', kill: keepalived.kill, sigstop: keepalived.sigstop },
      percentiles: { killToDownP99: percentile(killToDown, 0.99), stopToDownP99: percentile(stopToDown, 0.99) },
    });
    console.log(`\nwrote ${path}`);
  } finally {
    await Promise.all([primary.destroy(), backup.destroy()]);
  }
}

main().catch((error: unknown) => {
  console.error(`bench:heartbeat: ${(error as Error).message}`);
  process.exitCode = 1;
});
