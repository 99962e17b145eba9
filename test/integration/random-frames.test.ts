/**
 * Hostile bytes on a paired node's ports: truncated, oversized, garbage and wrong-version
 * frames, and well-framed headers that are not messages. Strangers (a fresh key, an expired
 * certificate) are dropped right after the TLS handshake; the paired backup's own key gets
 * past the pin check and is then refused by the frame parser. Thousands of connections
 * later both `understudy serve` processes still run, still pair with each other, see each
 * other up, and the event log holds a handful of rate-limited refusals, not a flood.
 *
 * Replay a run with UNDERSTUDY_FUZZ_SEED=<seed printed in the diagnostics>.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import type { ConnectionOptions } from 'node:tls';
import type { EventRecord, StatusReport } from '../../src-main/contract/control.js';
import { generateIdentity, loadIdentity, type Identity } from '../../src-main/engine/identity/identity.js';
import { encodeFrame, ProtocolVersion } from '../../src-main/engine/link/frame.js';
import { MaxFrameBytes } from '../../src-main/engine/link/messages.js';
import { Alpn, clientTlsOptions, HandshakeTimeoutMs, type AlpnProtocol } from '../../src-main/engine/link/tls.js';
import { pairNodes, TestNode, waitFor } from '../support/harness.js';
import { Random } from '../support/random.js';
import { inPool, probe, type ProbeResult } from '../support/wire.js';

const Seed = Number(process.env.UNDERSTUDY_FUZZ_SEED ?? randomInt(2 ** 31));
const rng = new Random(Seed);

/** Connections from the paired identity, per port and per kind of bad frame. */
const PairedPerKindPerPort = 250;
/** Connections from each stranger identity, per port and protocol offered. */
const StrangerPerCombination = 60;
const Concurrency = 48;
/** How long a truncated frame is left hanging before this side closes the connection. */
const TruncatedHoldMs = 150;

type Channel = 'link' | 'beat';
const BadKinds = ['truncated', 'oversized', 'garbage', 'wrong-version', 'bad-json', 'schema-invalid', 'unknown-type', 'unexpected-body'] as const;
type BadKind = (typeof BadKinds)[number];

const KnownTypes = new Set(['hello', 'hb.hello', 'ping', 'pong', 'pair.hello', 'pair.challenge', 'pair.proof', 'pair.accepted', 'pair.commit', 'pair.committed', 'pair.refused']);
const Base32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function fakeNodeId(): string {
  return [0, 1, 2, 3].map(() => rng.text(13, Base32)).join('-');
}

/** A message the channel would accept from this node id (the base for version and framing faults). */
function validMessage(channel: Channel, nodeId: string): Record<string, unknown> {
  if (channel === 'beat') {
    return rng.pick([{ t: 'hb.hello', nodeId }, { t: 'ping', seq: rng.int(0, 1e6), epoch: 1 }, { t: 'pong', seq: rng.int(0, 1e6), epoch: 1 }]);
  }
  return { t: 'hello', nodeId, name: 'beta', role: 'backup', epoch: 1, position: { epoch: 1, seq: 0 } };
}

/** A JSON header the channel's schema must refuse. */
function schemaInvalidHeader(channel: Channel, nodeId: string): unknown {
  const common: unknown[] = [42, 'hello', null, true, [], [validMessage(channel, nodeId)], {}, { t: 7 }, { t: null }, { type: 'hello', nodeId }];
  const link: unknown[] = [
    { t: 'hello', nodeId: fakeNodeId().toLowerCase(), name: 'beta', role: 'backup', epoch: 1, position: { epoch: 1, seq: 0 } },
    { t: 'hello', nodeId, name: '', role: 'backup', epoch: 1, position: { epoch: 1, seq: 0 } },
    { t: 'hello', nodeId, name: 'x'.repeat(65), role: 'backup', epoch: 1, position: { epoch: 1, seq: 0 } },
    { t: 'hello', nodeId, name: 'beta', role: 'king', epoch: 1, position: { epoch: 1, seq: 0 } },
    { t: 'hello', nodeId, name: 'beta', role: 'backup', epoch: -1, position: { epoch: 1, seq: 0 } },
    { t: 'hello', nodeId, name: 'beta', role: 'backup', epoch: 1.5, position: { epoch: 1, seq: 0 } },
    { t: 'hello', nodeId, name: 'beta', role: 'backup', epoch: '1', position: { epoch: 1, seq: 0 } },
    { t: 'hello', nodeId, name: 'beta', role: 'backup', epoch: 1 },
    { t: 'hello', nodeId, name: 'beta', role: 'backup', epoch: 1, position: { epoch: 1, seq: -3 } },
    { t: 'hello', nodeId: 12345, name: 'beta', role: 'backup', epoch: 1, position: { epoch: 1, seq: 0 } },
  ];
  const beat: unknown[] = [
    { t: 'hb.hello', nodeId: `${nodeId}X` },
    { t: 'hb.hello' },
    { t: 'ping', seq: -1, epoch: 1 },
    { t: 'ping', seq: 1, epoch: 'one' },
    { t: 'pong', seq: 0.5, epoch: 1 },
    { t: 'pong', epoch: 1 },
  ];
  return rng.pick([...common, ...(channel === 'link' ? link : beat)]);
}

/** One bad frame of the given kind for the channel, as raw bytes. */
function badFrame(kind: BadKind, channel: Channel, nodeId: string): Buffer {
  const max = channel === 'link' ? MaxFrameBytes.link : MaxFrameBytes.beat;
  switch (kind) {
    case 'truncated': {
      const whole = encodeFrame(validMessage(channel, nodeId));
      return whole.subarray(0, rng.int(1, whole.length - 1));
    }
    case 'oversized': {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(rng.next() < 0.2 ? max + 1 : rng.int(max + 1, 0xffffffff));
      return Buffer.concat([head, rng.bytes(rng.int(0, 64))]);
    }
    case 'garbage': {
      if (rng.next() < 0.1) {
        // A length too short to hold even the version and header length.
        const head = Buffer.alloc(4);
        head.writeUInt32BE(rng.int(0, 4));
        return Buffer.concat([head, rng.bytes(rng.int(0, 32))]);
      }
      return rng.bytes(rng.int(16, 600));
    }
    case 'wrong-version': {
      const frame = encodeFrame(validMessage(channel, nodeId));
      let version = rng.int(0, 255);
      if (version === ProtocolVersion) version = 0;
      frame.writeUInt8(version, 4);
      return frame;
    }
    case 'bad-json': {
      let text: Buffer;
      do text = rng.next() < 0.5 ? Buffer.from(`{"t":"${rng.text(rng.int(0, 20))}`) : rng.bytes(rng.int(1, 200));
      while (parsesAsJson(text));
      return rawFrame(text, Buffer.alloc(0));
    }
    case 'schema-invalid':
      return encodeFrame(schemaInvalidHeader(channel, nodeId));
    case 'unknown-type': {
      let t: string;
      do t = rng.pick(['', 'hello2', 'HELLO', 'hb.bye', 'replicate', 'pair.hello ']) || rng.text(rng.int(1, 30));
      while (KnownTypes.has(t));
      return encodeFrame({ t, nodeId, [rng.text(5)]: rng.int(0, 1000) });
    }
    case 'unexpected-body':
      return encodeFrame(validMessage(channel, nodeId), rng.bytes(rng.int(1, 256)));
  }
}

function parsesAsJson(bytes: Buffer): boolean {
  try {
    JSON.parse(bytes.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

/** A well-formed frame around an arbitrary header byte string. */
function rawFrame(header: Buffer, body: Buffer): Buffer {
  const out = Buffer.alloc(9 + header.length + body.length);
  out.writeUInt32BE(5 + header.length + body.length, 0);
  out.writeUInt8(ProtocolVersion, 4);
  out.writeUInt32BE(header.length, 5);
  header.copy(out, 9);
  body.copy(out, 9 + header.length);
  return out;
}

function tlsAs(identity: Identity, protocols: AlpnProtocol[] | null): ConnectionOptions {
  const options = clientTlsOptions(identity, protocols?.[0] ?? Alpn.link, '127.0.0.1', 0);
  if (protocols === null) delete options.ALPNProtocols;
  else options.ALPNProtocols = protocols;
  return options;
}

function summarize(results: { label: string; result: ProbeResult }[]): string {
  const counts = new Map<string, number>();
  for (const { label, result } of results) {
    const key = `${label} -> ${result.closedBy}${result.error ? ` (${result.error})` : ''}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([key, n]) => `${n} x ${key}`).join('\n');
}

async function statusJson(node: TestNode): Promise<StatusReport> {
  const result = await node.cli('status', '--json');
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as StatusReport;
}

async function allEvents(node: TestNode): Promise<EventRecord[]> {
  const result = await node.cli('events', '--json');
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as EventRecord[];
}

function isRunning(node: TestNode): boolean {
  const child = node.process;
  if (!child || child.exitCode !== null || child.signalCode !== null) return false;
  try {
    process.kill(child.pid!, 0);
    return true;
  } catch {
    return false;
  }
}

describe(`random frames on the peer and heartbeat ports (seed ${Seed})`, () => {
  let primary: TestNode;
  let backup: TestNode;
  let before0: { primary: StatusReport; backup: StatusReport };
  const strangerIds: string[] = [];

  before(async () => {
    [primary, backup] = await Promise.all([TestNode.create('alpha'), TestNode.create('beta')]);
    await Promise.all([primary.serve(), backup.serve()]);
    const paired = await pairNodes(primary, backup);
    assert.equal(paired.code, 0, paired.stderr);
    before0 = await waitFor(
      'both peers up with the data link connected',
      async () => {
        const [a, b] = await Promise.all([primary.status(), backup.status()]);
        const ready = [a, b].every((s) => s.peers.length === 1 && s.peers[0]!.state === 'up' && s.peers[0]!.link === 'connected');
        return ready ? { primary: a, backup: b } : undefined;
      },
      10_000,
    );
    assert.equal(before0.primary.node.role, 'primary');
    assert.equal(before0.backup.node.role, 'backup');
  });

  after(async () => {
    await Promise.all([primary?.destroy(), backup?.destroy()]);
  });

  test('strangers (a fresh key, an expired certificate) are dropped after the handshake on every port and protocol', async (t) => {
    t.diagnostic(`seed ${Seed}`);
    const fresh = await generateIdentity({ commonName: 'understudy stranger' });
    const year = 365 * 24 * 3600 * 1000;
    const expired = await generateIdentity({
      commonName: 'understudy expired',
      notBefore: new Date(Date.now() - 3 * year),
      notAfter: new Date(Date.now() - year),
    });
    strangerIds.push(fresh.nodeId, expired.nodeId);

    const protocols: (AlpnProtocol[] | null)[] = [[Alpn.link], [Alpn.pair], [Alpn.beat], [Alpn.link, Alpn.pair, Alpn.beat], null];
    type Attempt = { label: string; port: number; tls: ConnectionOptions; payload: Buffer; mayAnswer: boolean };
    const attempts: Attempt[] = [];
    for (const [who, identity] of [['fresh', fresh], ['expired', expired]] as const) {
      for (const node of [primary, backup]) {
        for (const [portName, port] of [['peer', node.port], ['heartbeat', node.port + 1]] as const) {
          for (const offered of protocols) {
            for (let i = 0; i < StrangerPerCombination; i++) {
              const channel: Channel = portName === 'heartbeat' ? 'beat' : 'link';
              // Random bytes, a bad frame, or a message that would be valid from a peer,
              // claiming to be the backup (the key gives it away).
              const roll = rng.next();
              const payload =
                roll < 0.3
                  ? rng.bytes(rng.int(1, 2000))
                  : roll < 0.8
                    ? badFrame(rng.pick(BadKinds.filter((k) => k !== 'truncated')), channel, identity.nodeId)
                    : encodeFrame(validMessage(channel, before0.backup.node.id));
              // Only the primary's pairing protocol reads anything from a stranger (it issued a code once):
              // it may answer with a refusal. Everything else must be dropped unanswered.
              const mayAnswer = node === primary && portName === 'peer';
              attempts.push({ label: `${who} ${node.name} ${portName} ${offered?.join('+') ?? 'no-alpn'}`, port, tls: tlsAs(identity, offered), payload, mayAnswer });
            }
          }
        }
      }
    }
    const started = Date.now();
    const results = await inPool(attempts, Concurrency, async (attempt) => ({
      label: attempt.label,
      attempt,
      result: await probe({ host: '127.0.0.1', port: attempt.port, tls: attempt.tls, payload: attempt.payload, timeoutMs: 12_000 }),
    }));
    t.diagnostic(`${results.length} stranger connections in ${Date.now() - started} ms`);

    const notClosedByNode = results.filter((r) => r.result.closedBy !== 'node');
    assert.equal(notClosedByNode.length, 0, `connections the node did not close:\n${summarize(notClosedByNode)}`);
    const answered = results.filter((r) => r.result.received > 0 && !(r.attempt.mayAnswer && r.result.alpn === Alpn.pair));
    assert.equal(answered.length, 0, `the node sent data to a stranger:\n${summarize(answered)}`);
    // A mismatched protocol fails the handshake itself; a matching one completes it and is then dropped.
    assert.ok(results.some((r) => r.result.secure), 'some handshakes complete (then the pin check drops them)');
    assert.ok(results.some((r) => !r.result.secure), 'some handshakes fail (no common protocol)');

    const [a, b] = await Promise.all([primary.status(), backup.status()]);
    assert.deepEqual(
      a.peers.map((p) => p.id),
      [before0.backup.node.id],
    );
    assert.deepEqual(
      b.peers.map((p) => p.id),
      [before0.primary.node.id],
    );
    for (const node of [primary, backup]) {
      const text = JSON.stringify(await allEvents(node));
      for (const id of strangerIds) assert.ok(!text.includes(id), `${node.name}'s events mention stranger ${id}`);
    }
  });

  test('plain (non-TLS) garbage and handshakes that never finish are dropped on both ports of both nodes', async () => {
    const attempts: { label: string; port: number; payload: Buffer }[] = [];
    for (const node of [primary, backup]) {
      for (const [portName, port] of [['peer', node.port], ['heartbeat', node.port + 1]] as const) {
        const at = `${node.name} ${portName}`;
        attempts.push({ label: `${at} http`, port, payload: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n') });
        attempts.push({ label: `${at} frame`, port, payload: encodeFrame(validMessage(portName === 'peer' ? 'link' : 'beat', before0.backup.node.id)) });
        for (let i = 0; i < 20; i++) attempts.push({ label: `${at} random`, port, payload: rng.bytes(rng.int(1, 4000)) });
        // Handshakes that stall: nothing at all, the start of a TLS record (a ClientHello that
        // never ends), an old-style SSLv2 record header. Only the handshake timeout ends them.
        attempts.push({ label: `${at} silent`, port, payload: Buffer.alloc(0) });
        attempts.push({ label: `${at} partial TLS record`, port, payload: Buffer.concat([Buffer.from('1603010200', 'hex'), rng.bytes(rng.int(0, 100))]) });
        attempts.push({ label: `${at} partial SSLv2 record`, port, payload: Buffer.concat([Buffer.from('80ff', 'hex'), rng.bytes(rng.int(0, 100))]) });
      }
    }
    const results = await inPool(attempts, Concurrency, async (attempt) => ({
      label: attempt.label,
      result: await probe({ host: '127.0.0.1', port: attempt.port, payload: attempt.payload, timeoutMs: HandshakeTimeoutMs + 5000 }),
    }));
    const notClosedByNode = results.filter((r) => r.result.closedBy !== 'node');
    assert.equal(notClosedByNode.length, 0, `connections the node did not close:\n${summarize(notClosedByNode)}`);
  });

  test("the backup's own key passes the pin check: a silent connection is held until its hello is due", async () => {
    const backupIdentity = loadIdentity(backup.home);
    assert.equal(backupIdentity.nodeId, before0.backup.node.id);
    const stranger = await generateIdentity({ commonName: 'understudy stranger' });
    for (const [port, alpn] of [
      [primary.port, Alpn.link],
      [primary.port + 1, Alpn.beat],
    ] as const) {
      const [pinned, unpinned] = await Promise.all([
        probe({ host: '127.0.0.1', port, tls: tlsAs(backupIdentity, [alpn]), payload: Buffer.alloc(0), closeAfterMs: 400 }),
        probe({ host: '127.0.0.1', port, tls: tlsAs(stranger, [alpn]), payload: Buffer.alloc(0), closeAfterMs: 400 }),
      ]);
      assert.equal(pinned.secure, true);
      assert.equal(pinned.closedBy, 'us', `the pinned key was dropped on port ${port} before it could send anything`);
      assert.equal(unpinned.secure, true);
      assert.equal(unpinned.closedBy, 'node', `the stranger was not dropped on port ${port}`);
    }
  });

  test("thousands of bad frames from the paired backup's identity are refused by the parser, one connection each", async (t) => {
    const backupIdentity = loadIdentity(backup.home);
    type Attempt = { kind: BadKind; channel: Channel; port: number; payload: Buffer };
    const attempts: Attempt[] = [];
    for (const channel of ['link', 'beat'] as const) {
      for (const kind of BadKinds) {
        for (let i = 0; i < PairedPerKindPerPort; i++) {
          attempts.push({ kind, channel, port: channel === 'link' ? primary.port : primary.port + 1, payload: badFrame(kind, channel, backupIdentity.nodeId) });
        }
      }
    }
    // Interleave kinds and ports so every batch in flight is a mix.
    for (let i = attempts.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [attempts[i], attempts[j]] = [attempts[j]!, attempts[i]!];
    }
    const started = Date.now();
    const results = await inPool(attempts, Concurrency, async (attempt) => ({
      label: `${attempt.channel} ${attempt.kind}`,
      attempt,
      result: await probe({
        host: '127.0.0.1',
        port: attempt.port,
        tls: tlsAs(backupIdentity, [attempt.channel === 'link' ? Alpn.link : Alpn.beat]),
        payload: attempt.payload,
        ...(attempt.kind === 'truncated' ? { closeAfterMs: TruncatedHoldMs } : {}),
        timeoutMs: 12_000,
      }),
    }));
    t.diagnostic(`${results.length} connections with bad frames from the paired identity in ${Date.now() - started} ms`);
    for (const kind of BadKinds) {
      const times = results.filter((r) => r.attempt.kind === kind).map((r) => r.result.msAfterWrite ?? 0);
      t.diagnostic(`${kind}: closed ${Math.round(Math.min(...times))}..${Math.round(Math.max(...times))} ms after the write`);
    }

    const handshakeFailed = results.filter((r) => !r.result.secure);
    assert.equal(handshakeFailed.length, 0, `the paired identity failed the handshake:\n${summarize(handshakeFailed)}`);
    const wrongCloser = results.filter((r) => r.result.closedBy !== (r.attempt.kind === 'truncated' ? 'us' : 'node'));
    assert.equal(wrongCloser.length, 0, `connections not closed as expected:\n${summarize(wrongCloser)}`);
    const answered = results.filter((r) => r.result.received > 0);
    assert.equal(answered.length, 0, `the node answered a bad frame:\n${summarize(answered)}`);
    for (const kind of BadKinds) {
      for (const channel of ['link', 'beat'] as const) {
        const n = results.filter((r) => r.attempt.kind === kind && r.attempt.channel === channel).length;
        assert.equal(n, PairedPerKindPerPort, `${kind} on ${channel}`);
      }
    }

    // The data port logs why each connection was refused: the parser, not the pin check.
    await waitFor('the refusal reasons in the log', () => (primary.output.includes('connection closed mid-frame') ? true : undefined), 5000);
    for (const reason of ['bad frame (oversized)', 'bad frame (wrong-version)', 'bad frame (malformed)', 'bad message', 'unexpected body', 'connection closed mid-frame']) {
      assert.ok(primary.output.includes(reason), `the primary's log does not mention '${reason}'`);
    }
  });

  test('afterwards both nodes still run, stay paired at epoch 1 and see each other up; refusals are recorded without flooding the log', async (t) => {
    assert.ok(isRunning(primary), `the primary's serve process is gone:\n${primary.output.slice(-2000)}`);
    assert.ok(isRunning(backup), `the backup's serve process is gone:\n${backup.output.slice(-2000)}`);

    const [a, b] = await waitFor(
      'status --json on both to show the peer up with the data link connected',
      async () => {
        const statuses = await Promise.all([statusJson(primary), statusJson(backup)]);
        return statuses.every((s) => s.peers[0]?.state === 'up' && s.peers[0].link === 'connected') ? statuses : undefined;
      },
      5000,
      100,
    );
    for (const [now, then] of [
      [a, before0.primary],
      [b, before0.backup],
    ] as const) {
      assert.equal(now.node.id, then.node.id);
      assert.equal(now.node.role, then.node.role);
      assert.equal(now.node.epoch, 1);
      assert.equal(now.node.pid, then.node.pid, 'the serve process was not restarted');
      assert.deepEqual(
        now.peers.map((p) => [p.id, p.role, p.pairedAt]),
        then.peers.map((p) => [p.id, p.role, p.pairedAt]),
      );
    }
    assert.equal(a.node.role, 'primary');
    assert.equal(b.node.role, 'backup');

    const events = await allEvents(primary);
    const refused = events.filter((e) => e.type === 'link.refused');
    assert.ok(
      refused.some((e) => String(e.reason).includes('not pinned')),
      `no link.refused event for the strangers: ${JSON.stringify(refused)}`,
    );
    assert.ok(refused.length < 50, `${refused.length} link.refused events: refusals are not rate-limited`);
    const types = events.map((e) => e.type);
    const wobbles = events.filter((e) => e.type === 'peer.suspect' || e.type === 'peer.down');
    t.diagnostic(`${refused.length} link.refused events; the backup was suspect or down ${wobbles.length} times during the run`);
    assert.equal(types.filter((type) => type === 'pair.completed').length, 1);
    assert.ok(!types.includes('node.stopped'), 'the primary stopped at some point');
    const text = JSON.stringify(events);
    for (const id of strangerIds) assert.ok(!text.includes(id), `the primary's events mention stranger ${id}`);
  });
});
