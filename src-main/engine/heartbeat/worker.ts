/**
 * The heartbeat worker thread: its own TLS listener and connections, its own timers, so a
 * long synchronous call on the main thread (SQLite, hashing, a GC pause) never delays a beat
 * or a verdict. It owns failure detection and reports state changes to the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createServer, connect, type TLSSocket, type Server } from 'node:tls';
import { systemClock } from '../clock.js';
import { nodeIdFromKeyHash } from '../identity/identity.js';
import { FramedSocket } from '../link/framed-socket.js';
import { BeatMessageSchema, MaxFrameBytes, type BeatMessage } from '../link/messages.js';
import { Alpn, clientTlsOptions, peerKeyHash, serverTlsOptions } from '../link/tls.js';
import { PeerDetector } from './detector.js';
import { ballotFile } from '../cluster/ballot-file.js';
import { bootClock, machineMonoMs } from '../cluster/lease-clock.js';
import { LeaseKeeper, LeaseSlots, type ClusterView } from '../cluster/lease-keeper.js';
import type { BeatPeer, BeatWorkerData, FromWorker, ToWorker } from './worker-protocol.js';

const data = workerData as BeatWorkerData;
const port = parentPort!;
const identity = { nodeId: data.nodeId, certPem: data.certPem, keyPem: data.keyPem };
const settings = { intervalMs: data.intervalMs, suspectAfterMs: data.suspectAfterMs, downAfterMs: data.downAfterMs };
/** A new connection must say hello within this time. */
const HelloTimeoutMs = Math.max(1000, data.downAfterMs);
const DialBackoffMinMs = 100;
const DialBackoffMaxMs = 1000;

let epoch = 0;
let seq = 0;
let stopping = false;
let view: ClusterView | null = null;
const shared = new Float64Array(data.leaseBuffer);
const keeper = new LeaseKeeper(
  bootClock(),
  {
    report: (report) => post({ type: 'keeper', report, mono: machineMonoMs() }),
    sendVoteRequest: (to, knownEpoch, reqId) => {
      const conn = sessions.get(to)?.active;
      if (!conn) return false;
      conn.send({ t: 'vote.request', epoch: knownEpoch, reqId });
      return true;
    },
    publish: (actUntil, enforced) => {
      shared[LeaseSlots.actUntil] = actUntil;
      shared[LeaseSlots.enforced] = enforced ? 1 : 0;
    },
    log: (msg, fields) => log('info', msg, fields),
  },
  { leaseMs: data.leaseMs },
  ballotFile(data.home),
);

function post(message: FromWorker): void {
  port.postMessage(message);
}

function log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown> = {}): void {
  post({ type: 'log', level, msg, fields });
}

class BeatPeerSession {
  readonly detector = new PeerDetector(systemClock, settings);
  active: FramedSocket<BeatMessage> | null = null;
  private dialTimer: NodeJS.Timeout | null = null;
  private backoffMs = DialBackoffMinMs;
  private dialing: FramedSocket<BeatMessage> | null = null;
  lastSeenWall: number | null = null;

  constructor(public peer: BeatPeer) {
    if (peer.dial) this.scheduleDial(0);
  }

  update(peer: BeatPeer): void {
    const addressChanged = peer.host !== this.peer.host || peer.port !== this.peer.port;
    this.peer = peer;
    if (peer.dial && (addressChanged || (!this.active && !this.dialing && !this.dialTimer))) this.scheduleDial(0);
  }

  /** A connection (dialed or accepted) has said hello: it becomes the one we beat on. */
  activate(conn: FramedSocket<BeatMessage>): void {
    const old = this.active;
    this.active = conn;
    if (this.dialing === conn) this.dialing = null;
    if (old && old !== conn) old.close('replaced by a newer heartbeat connection');
    this.backoffMs = DialBackoffMinMs;
    this.detector.connected();
    this.beat();
  }

  lost(conn: FramedSocket<BeatMessage>, reason: string): void {
    if (this.dialing === conn) this.dialing = null;
    if (this.active !== conn) {
      if (this.peer.dial && !this.active) this.scheduleDial(this.nextBackoff());
      return;
    }
    this.active = null;
    this.report(this.detector.disconnected(reason));
    if (this.peer.dial) this.scheduleDial(this.nextBackoff());
  }

  beat(lease?: { id: number; leaseMs: number }): void {
    if (!this.active) return;
    seq += 1;
    this.detector.pingSent(seq);
    this.active.send({ t: 'ping', seq, epoch, ...(view ? { role: view.role } : {}), ...(lease ? { lease: lease.id, leaseMs: lease.leaseMs } : {}) });
  }

  tick(): void {
    const transition = this.detector.tick();
    if (transition) {
      this.report(transition);
      // A silent connection is dropped and dialed afresh: after a partition heals, a new
      // connection is up at once, while the old one could wait out TCP's retransmission backoff.
      if (transition.state === 'down' && this.active) this.active.close(`peer down: ${transition.reason}`);
    }
  }

  pong(seqNo: number): void {
    const transition = this.detector.pongReceived(seqNo);
    if (this.detector.state === 'up') this.lastSeenWall = Date.now();
    if (transition) this.report(transition);
  }

  report(transition: { state: string; reason: string } | null, changed = true): void {
    if (!transition && changed) return;
    post({
      type: 'peer',
      id: this.peer.id,
      state: this.detector.state,
      reason: transition?.reason ?? '',
      rttMs: this.detector.rttMs,
      rtt: this.detector.rttStats(),
      lastSeenAt: this.lastSeenWall,
      changed,
    });
  }

  close(): void {
    if (this.dialTimer) clearTimeout(this.dialTimer);
    this.dialTimer = null;
    this.active?.close(null);
    this.dialing?.close(null);
  }

  private nextBackoff(): number {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, DialBackoffMaxMs);
    return delay;
  }

  private scheduleDial(delayMs: number): void {
    if (stopping || this.dialTimer) return;
    this.dialTimer = setTimeout(() => {
      this.dialTimer = null;
      this.dial();
    }, delayMs);
  }

  private dial(): void {
    if (stopping || this.active || this.dialing) return;
    const socket = connect(clientTlsOptions(identity, Alpn.beat, this.peer.host, this.peer.port));
    const conn = attach(socket, this);
    this.dialing = conn;
    socket.once('secureConnect', () => {
      const hash = peerKeyHash(socket);
      if (!hash || hash.toString('hex') !== this.peer.keyHash) {
        conn.close(`the node at ${this.peer.host}:${this.peer.port} presented a key we have not pinned`);
        return;
      }
      conn.send({ t: 'hb.hello', nodeId: identity.nodeId });
    });
  }
}

const sessions = new Map<string, BeatPeerSession>();

/** Wires a socket's frames to the session it belongs to (known up front when dialing). */
function attach(socket: TLSSocket, known: BeatPeerSession | null): FramedSocket<BeatMessage> {
  let session = known;
  let greeted = false;
  const helloTimer = setTimeout(() => conn.close('no heartbeat hello in time'), HelloTimeoutMs);
  const conn: FramedSocket<BeatMessage> = new FramedSocket(socket, {
    schema: BeatMessageSchema,
    maxFrameBytes: MaxFrameBytes.beat,
    onMessage: (message) => {
      if (!greeted) {
        if (message.t !== 'hb.hello') return conn.close(`expected hb.hello, got ${message.t}`);
        const hash = peerKeyHash(socket);
        const claimed = hash ? nodeIdFromKeyHash(hash) : null;
        if (claimed !== message.nodeId) return conn.close('hb.hello names a node id other than the key presented');
        const owner = sessions.get(message.nodeId);
        if (!owner || (session && session !== owner)) return conn.close('hb.hello from a node that is not a peer');
        if (!session) conn.send({ t: 'hb.hello', nodeId: identity.nodeId });
        session = owner;
        greeted = true;
        clearTimeout(helloTimer);
        owner.activate(conn);
        return;
      }
      switch (message.t) {
        case 'ping': {
          const extras = session ? keeper.onPing(session.peer.id, message) : {};
          conn.send({ t: 'pong', seq: message.seq, epoch, ...extras });
          return;
        }
        case 'pong':
          if (session?.active === conn) {
            session.pong(message.seq);
            keeper.onPong(message);
          }
          return;
        case 'vote.request': {
          if (!session) return;
          const primary = view?.primaryId ? sessions.get(view.primaryId) : undefined;
          const reply = keeper.onVoteRequest(session.peer.id, message, primary?.detector.state === 'up');
          conn.send({ t: 'vote.reply', reqId: message.reqId, granted: reply.granted, epoch: reply.epoch, ...(reply.reason ? { reason: reply.reason } : {}) });
          return;
        }
        case 'vote.reply':
          keeper.onVoteReply(message);
          return;
        case 'hb.hello':
          return conn.close('a second hb.hello on one connection');
      }
    },
    onClose: (reason) => {
      clearTimeout(helloTimer);
      if (reason && (!session || !greeted)) log('debug', 'heartbeat connection refused', { reason });
      else if (reason) log('info', 'heartbeat connection closed', { peer: session?.peer.id, reason });
      session?.lost(conn, reason ?? 'connection closed');
    },
  });
  return conn;
}

function acceptConnection(socket: TLSSocket): void {
  const hash = peerKeyHash(socket)?.toString('hex');
  const pinned = [...sessions.values()].some((s) => s.peer.keyHash === hash);
  if (!pinned) {
    log('info', 'heartbeat connection refused: unpinned key', { remote: socket.remoteAddress });
    socket.destroy();
    return;
  }
  attach(socket, null);
}

const server: Server = createServer(serverTlsOptions(identity, [Alpn.beat]), acceptConnection);
server.on('tlsClientError', (error, socket) => {
  log('debug', 'heartbeat TLS handshake failed', { error: error.message });
  // Node reports a handshake timeout here but leaves the socket open: drop it ourselves.
  socket.destroy();
});
server.on('error', (error: NodeJS.ErrnoException) => {
  post({ type: 'listen-error', code: error.code ?? 'unknown', message: error.message });
});
server.listen(data.listenPort, data.listenHost, () => post({ type: 'listening' }));

/** One round: a ping to every peer, carrying the primary's lease renewal. */
function beatRound(): void {
  const lease = keeper.leaseRequest();
  for (const session of sessions.values()) session.beat(lease);
}

const beatTimer = setInterval(beatRound, data.intervalMs);
const tickTimer = setInterval(
  () => {
    for (const session of sessions.values()) session.tick();
    const up = (id: string | null | undefined) => (id ? sessions.get(id)?.detector.state === 'up' : false);
    keeper.tick({ primaryUp: up(view?.primaryId), witnessUp: up(view?.witnessId) });
  },
  Math.max(10, Math.floor(data.intervalMs / 4)),
);
// RTT figures change with every beat; the main thread gets them once a second, not per beat.
const statsTimer = setInterval(() => {
  for (const session of sessions.values()) session.report(null, false);
}, 1000);

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'peers': {
      const ids = new Set(message.peers.map((p) => p.id));
      for (const [id, session] of sessions) {
        if (!ids.has(id)) {
          session.close();
          sessions.delete(id);
        }
      }
      for (const peer of message.peers) {
        const existing = sessions.get(peer.id);
        if (existing) existing.update(peer);
        else sessions.set(peer.id, new BeatPeerSession(peer));
      }
      return;
    }
    case 'cluster': {
      view = message.view;
      epoch = view.epoch;
      keeper.setView(view);
      // A primary (new, or with new settings) asks for its lease at once rather than at the next beat.
      if (view.role === 'primary') beatRound();
      return;
    }
    case 'stop':
      stopping = true;
      clearInterval(beatTimer);
      clearInterval(tickTimer);
      clearInterval(statsTimer);
      for (const session of sessions.values()) session.close();
      server.close(() => {
        post({ type: 'stopped' });
        port.close();
      });
      return;
  }
});
