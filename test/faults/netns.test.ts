/**
 * Self-test of the fault-injection toolkit: a lab of three namespaces (a, b, c) with a probe
 * agent in each (TCP echo + UDP sink), and real traffic showing what each fault cuts and what
 * it leaves alone. Runs as root only; the lab goes away even when a check fails (after hook,
 * plus the lab's own exit handler).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, afterEach, before, describe, test } from 'node:test';
import { spawnDelayProxy, startDelayProxy } from './support/delay-proxy.js';
import { startNetAgent, type NetAgent } from './support/net-agent.js';
import { createLab, labSupport, NamespacePrefix, type Lab } from './support/netns.js';

const Port = 7000;
/** How long a probe waits before calling a path cut: far above the lab's ~0.1 ms round trip. */
const CutMs = 600;
/** How long to wait for datagrams that should (or should not) arrive. */
const UdpSettleMs = 250;

const unsupported = labSupport();
if (unsupported) console.log(`skipping the network-namespace self-test: ${unsupported}`);

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function namespacesOf(lab: Lab): string[] {
  const listed = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  const ours = [lab.switchNamespace, ...lab.names.map((name) => lab.namespace(name))];
  return listed
    .split('\n')
    .map((line) => line.split(/\s+/)[0] ?? '')
    .filter((ns) => ours.includes(ns));
}

describe('network-namespace lab', { skip: unsupported ?? false }, () => {
  let lab: Lab;
  const agents: Record<string, NetAgent> = {};

  /** Can `from` complete a TCP round trip with `to`'s echo? */
  const reach = (from: string, to: string, timeoutMs = CutMs): Promise<boolean> => agents[from]!.canReach(lab.address(to), Port, timeoutMs);

  /** Sends `count` datagrams from → to and returns how many arrived. */
  async function udpDelivered(from: string, to: string, count = 3): Promise<number> {
    await agents[to]!.takeDatagrams();
    const tag = `${from}>${to}:${Math.random()}`;
    for (let i = 0; i < count; i++) await agents[from]!.udpSend(lab.address(to), Port, tag);
    await sleep(UdpSettleMs);
    return (await agents[to]!.takeDatagrams()).filter((d) => d.text === tag && d.from === lab.address(from)).length;
  }

  before(async () => {
    lab = await createLab(['a', 'b', 'c']);
    for (const name of lab.names) agents[name] = await startNetAgent(lab, name, Port);
  });

  // A check that fails half-way must not leave its cut in place for the next one.
  afterEach(async () => {
    await lab?.heal();
  });

  after(async () => {
    await Promise.all(Object.values(agents).map((agent) => agent.close()));
    await lab?.destroy();
  });

  test('every member has its own address, loopback up and reaches the others', async () => {
    assert.deepEqual(
      lab.names.map((name) => lab.address(name)),
      ['10.77.0.10', '10.77.0.11', '10.77.0.12'],
    );
    assert.ok(lab.namespace('a').startsWith(`${NamespacePrefix}${process.pid}-`));
    assert.deepEqual(lab.prefix('a').slice(-3), ['netns', 'exec', lab.namespace('a')]);
    assert.match(await lab.exec('a', 'ip', ['-br', 'addr', 'show', 'lo']), /UNKNOWN|UP/);
    // Loopback works inside the namespace: the agent reaches its own echo on 127.0.0.1.
    assert.ok((await agents.a!.tcpPing('127.0.0.1', Port, 2000)).rttMs >= 0);
    const pairs: [string, string][] = [['a', 'b'], ['b', 'a'], ['a', 'c'], ['c', 'b']];
    assert.deepEqual(await Promise.all(pairs.map(([from, to]) => reach(from, to, 2000))), [true, true, true, true]);
    assert.equal(await udpDelivered('a', 'b'), 3);
  });

  test('partition(a, b) cuts a<->b both ways and leaves a<->c and b<->c alone', async () => {
    await lab.partition('a', 'b');
    try {
      assert.deepEqual(lab.cuts().sort(), [['a', 'b'], ['b', 'a']]);
      const [ab, ba, ac, ca, bc] = await Promise.all([reach('a', 'b'), reach('b', 'a'), reach('a', 'c', 2000), reach('c', 'a', 2000), reach('b', 'c', 2000)]);
      assert.deepEqual({ ab, ba, ac, ca, bc }, { ab: false, ba: false, ac: true, ca: true, bc: true });
      const [udpAB, udpBA] = await Promise.all([udpDelivered('a', 'b'), udpDelivered('b', 'a')]);
      assert.deepEqual({ udpAB, udpBA }, { udpAB: 0, udpBA: 0 });
    } finally {
      await lab.heal();
    }
    assert.deepEqual(lab.cuts(), []);
    assert.deepEqual(await Promise.all([reach('a', 'b', 2000), reach('b', 'a', 2000)]), [true, true]);
  });

  test('oneWay(a, b) drops a->b only: datagrams b->a still arrive, and a TCP connect fails either way', async () => {
    await lab.oneWay('a', 'b');
    try {
      assert.deepEqual(lab.cuts(), [['a', 'b']]);
      assert.equal(await udpDelivered('a', 'b'), 0, 'a->b datagrams must be dropped');
      assert.equal(await udpDelivered('b', 'a'), 3, 'b->a datagrams must still arrive');
      // TCP needs both directions: from a the SYN is lost, from b the SYN-ACK is.
      assert.deepEqual(await Promise.all([reach('a', 'b'), reach('b', 'a')]), [false, false]);
      assert.equal(await udpDelivered('a', 'c'), 3);
    } finally {
      await lab.heal();
    }
    assert.equal(await udpDelivered('a', 'b'), 3);
  });

  test('oneWay on an established stream: what b echoes to a is lost only when b->a is cut', async () => {
    await agents.a!.streamOpen('s', lab.address('b'), Port, 2000);
    assert.ok((await agents.a!.streamPing('s', 'one', 2000)).rttMs >= 0);
    await lab.oneWay('b', 'a');
    try {
      await assert.rejects(agents.a!.streamPing('s', 'two', CutMs), /no echo/);
    } finally {
      await lab.heal();
    }
    // TCP retransmits after the heal, so the stream recovers with nothing lost.
    assert.ok((await agents.a!.streamPing('s', 'three', 5000)).rttMs >= 0);
  });

  test('isolate(a) cuts a from everyone; heal restores it', async () => {
    await lab.isolate('a');
    try {
      const [ab, ac, ca, bc] = await Promise.all([reach('a', 'b'), reach('a', 'c'), reach('c', 'a'), reach('b', 'c', 2000)]);
      assert.deepEqual({ ab, ac, ca, bc }, { ab: false, ac: false, ca: false, bc: true });
    } finally {
      await lab.heal();
    }
    assert.deepEqual(await Promise.all([reach('a', 'b', 2000), reach('c', 'a', 2000)]), [true, true]);
  });

  test('flap(a, b) alternates outages and connectivity, and ends healed', async () => {
    await agents.b!.takeDatagrams();
    let sent = 0;
    let flapping = true;
    const flap = lab.flap('a', 'b', { downMs: 300, upMs: 300, times: 2 }).finally(() => (flapping = false));
    while (flapping) {
      await agents.a!.udpSend(lab.address('b'), Port, `flap${sent++}`);
      await sleep(20);
    }
    await flap;
    await sleep(UdpSettleMs);
    const received = (await agents.b!.takeDatagrams()).filter((d) => d.text.startsWith('flap')).length;
    // Down ~600 of ~900 ms: some datagrams must have died, and the ones in the up phase arrived.
    assert.ok(received > 0 && received < sent, `received ${received} of ${sent}`);
    assert.deepEqual(lab.cuts(), []);
    assert.equal(await reach('a', 'b', 2000), true);
  });

  test('a delay proxy inside a namespace adds its delay both ways, blackholes and resets', async () => {
    const delayMs = 100;
    const proxy = await spawnDelayProxy({
      prefix: lab.prefix('a'),
      listenHost: lab.address('a'),
      listenPort: 7100,
      targetHost: lab.address('b'),
      targetPort: Port,
      delayMs,
    });
    try {
      const direct = await agents.c!.tcpPing(lab.address('b'), Port, 2000);
      const delayed = await agents.c!.tcpPing(proxy.host, proxy.port, 3000);
      // One delay toward b and one back: the echo comes at least 2 x delay later.
      assert.ok(delayed.rttMs >= 2 * delayMs, `round trip through the proxy took ${delayed.rttMs.toFixed(1)} ms`);
      assert.ok(delayed.rttMs < 2 * delayMs + 500, `round trip through the proxy took ${delayed.rttMs.toFixed(1)} ms`);
      assert.ok(direct.rttMs < delayMs, `direct round trip took ${direct.rttMs.toFixed(1)} ms`);

      await proxy.setDelay({ toTarget: 0, toClient: 50 });
      const oneSided = await agents.c!.tcpPing(proxy.host, proxy.port, 3000);
      assert.ok(oneSided.rttMs >= 50 && oneSided.rttMs < 2 * delayMs, `one-sided delay round trip took ${oneSided.rttMs.toFixed(1)} ms`);

      await agents.c!.streamOpen('p', proxy.host, proxy.port, 2000);
      await proxy.setMode('blackhole');
      const held = agents.c!.streamPing('p', 'held', 3000);
      assert.equal(await agents.c!.canReach(proxy.host, proxy.port, 400), false, 'a new connection must get no echo in blackhole mode');
      await proxy.setMode('forward');
      // Bytes held in blackhole mode are delivered once forwarding resumes.
      assert.ok((await held).rttMs >= 400);

      await proxy.setMode('reset');
      await assert.rejects(agents.c!.streamPing('p', 'reset', 2000), /ECONNRESET|closed/);
      await assert.rejects(agents.c!.tcpPing(proxy.host, proxy.port, 2000), /ECONNRESET|closed/);
      await proxy.setMode('forward');
      assert.equal(await agents.c!.canReach(proxy.host, proxy.port, 2000), true);
    } finally {
      await proxy.close();
    }
  });

  test('an in-process delay proxy on loopback adds at least 2 x its delay to a round trip', async () => {
    const { createServer, connect } = await import('node:net');
    const echo = createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', () => resolve()));
    const echoPort = (echo.address() as { port: number }).port;
    const proxy = await startDelayProxy({ targetHost: '127.0.0.1', targetPort: echoPort, delayMs: 60 });
    try {
      const socket = connect({ host: proxy.host, port: proxy.port });
      await new Promise((resolve) => socket.once('connect', resolve));
      const started = performance.now();
      const echoed = new Promise((resolve) => socket.once('data', resolve));
      socket.write('x');
      await echoed;
      const rtt = performance.now() - started;
      socket.destroy();
      assert.ok(rtt >= 120, `round trip took ${rtt.toFixed(1)} ms`);
    } finally {
      await proxy.close();
      await new Promise((resolve) => echo.close(resolve));
    }
  });

  test('destroy removes every namespace and the processes in them', async () => {
    const scratch = await createLab(['x', 'y']);
    const sleeper = scratch.spawn('x', 'sleep', ['60']);
    assert.equal(namespacesOf(scratch).length, 3);
    await scratch.destroy();
    await scratch.destroy();
    assert.deepEqual(namespacesOf(scratch), []);
    assert.ok(sleeper.exitCode !== null || sleeper.signalCode !== null, 'the process started in the lab must be dead');
    await assert.rejects(scratch.partition('x', 'y'), /destroyed/);
  });
});
