/**
 * npm run bench:heartbeat — the pulse of a pair on loopback at default settings:
 * time from `serve` to peer `up`, heartbeat RTT p50/p99, and time to a `down` verdict after
 * kill -9 and SIGSTOP. Anchor: keepalived's default detection bound (3 adverts of 1 s plus
 * skew = 3.6 s, from its documentation) — measured side by side by `npm run bench:keepalived`
 * where that benchmark exists; here it is the documented bound, and the table says so.
 *
 * Options: --rounds N (default 5), --rtt-seconds S (default 30).
 */
import { pairNodes, TestNode, waitFor } from '../test/support/harness.js';
import { median, percentile, printTable, writeResults } from './stats.js';
import type { EventRecord } from '../src-main/contract/control.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const rounds = option('rounds', 5);
const rttSeconds = option('rtt-seconds', 30);

async function upAt(node: TestNode, since: number): Promise<EventRecord> {
  return node.waitForEvent('peer.up', since, 10_000);
}

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
      void upAt;
    }

    const keepalivedBoundMs = 3600;
    const rows = [
      { measure: 'pair command -> both up (ms)', runs: 1, median: pairToUp, max: pairToUp, goal: '< 2000', anchor: '' },
      { measure: 'serve -> peer up (ms)', runs: serveToUp.length, median: median(serveToUp), max: Math.max(...serveToUp), goal: '< 2000', anchor: '' },
      {
        measure: 'kill -9 -> down (ms)',
        runs: killToDown.length,
        median: median(killToDown),
        max: Math.max(...killToDown),
        goal: '< 1000',
        anchor: `keepalived bound 3600 (x${(median(killToDown) / keepalivedBoundMs).toFixed(2)})`,
      },
      {
        measure: 'SIGSTOP -> down (ms)',
        runs: stopToDown.length,
        median: median(stopToDown),
        max: Math.max(...stopToDown),
        goal: '< 1000',
        anchor: `keepalived bound 3600 (x${(median(stopToDown) / keepalivedBoundMs).toFixed(2)})`,
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
      anchor: { name: 'keepalived default detection bound (documented)', ms: keepalivedBoundMs },
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
