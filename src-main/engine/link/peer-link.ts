/**
 * The data link to each peer: one long-lived mutual-TLS connection on the peer port,
 * dialed by the node with the lower id and re-dialed with backoff whenever it drops.
 * Replication rides on it; heartbeats do not (they have their own connection and thread).
 */
import { EventEmitter } from 'node:events';
import { connect, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Identity } from '../identity/identity.js';
import { nodeIdFromKeyHash } from '../identity/identity.js';
import type { PeerRecord } from '../store/store.js';
import { FramedSocket } from './framed-socket.js';
import { LinkBodyMessages, LinkMessageSchema, MaxFrameBytes, type LinkMessage } from './messages.js';
import { Alpn, clientTlsOptions, formatAddress, peerKeyHash } from './tls.js';

const BackoffMinMs = 200;
const BackoffMaxMs = 5000;
const HelloTimeoutMs = 5000;

export type Hello = Extract<LinkMessage, { t: 'hello' }>;

export interface PeerLinksEvents {
  connected: [peerId: string, hello: Hello];
  disconnected: [peerId: string, reason: string];
  /** A replication message from a connected peer. */
  message: [peerId: string, message: Exclude<LinkMessage, Hello>, body: Buffer];
  /** A connection was refused or dropped for a protocol fault (bad frame, unpinned key...). */
  refused: [reason: string, details: { remote: string; peer: string | null }];
}

/** Whether this node dials the peer: the lower id dials, so the two never race each other. */
export function dialsPeer(selfId: string, peerId: string): boolean {
  return selfId < peerId;
}

class PeerLink {
  active: FramedSocket<LinkMessage> | null = null;
  dialing: FramedSocket<LinkMessage> | null = null;
  timer: NodeJS.Timeout | null = null;
  backoffMs = BackoffMinMs;
  /** Bytes of connections that closed; the active one's are added when asked. */
  closedBytes = { sent: 0, received: 0 };
  constructor(public peer: PeerRecord) {}
}

export class PeerLinks extends EventEmitter<PeerLinksEvents> {
  private readonly links = new Map<string, PeerLink>();
  private readonly drainWaits = new WeakMap<object, Promise<void>>();
  private stopped = false;

  constructor(
    private readonly identity: Identity,
    private readonly hello: () => Hello,
    private readonly log: Logger,
  ) {
    super();
  }

  setPeers(peers: PeerRecord[]): void {
    const ids = new Set(peers.map((p) => p.id));
    for (const [id, link] of this.links) {
      if (!ids.has(id)) {
        // Out of the map first: the close below must not schedule a dial for it.
        this.links.delete(id);
        this.closeLink(link);
      }
    }
    for (const peer of peers) {
      const link = this.links.get(peer.id) ?? new PeerLink(peer);
      link.peer = peer;
      if (!this.links.has(peer.id)) {
        this.links.set(peer.id, link);
        this.schedule(link, 0);
      }
    }
  }

  /** Frame bytes sent to and received from the peer on the data link since this node started. */
  bytes(peerId: string): { sent: number; received: number } {
    const link = this.links.get(peerId);
    if (!link) return { sent: 0, received: 0 };
    return { sent: link.closedBytes.sent + (link.active?.sentBytes ?? 0), received: link.closedBytes.received + (link.active?.receivedBytes ?? 0) };
  }

  isConnected(peerId: string): boolean {
    return Boolean(this.links.get(peerId)?.active);
  }

  /**
   * Sends a message on the peer's data link. Returns false when the link is down (the
   * message is dropped: replication resumes from acknowledged positions on reconnect).
   */
  send(peerId: string, message: Exclude<LinkMessage, Hello>, body?: Buffer): boolean {
    const conn = this.links.get(peerId)?.active;
    if (!conn) return false;
    conn.send(message, body);
    return true;
  }

  /** Whether the peer's link has more queued than its socket buffer holds. */
  backedUp(peerId: string): boolean {
    return Boolean(this.links.get(peerId)?.active?.socket.writableNeedDrain);
  }

  /** Resolves when the peer's link can take more data (or at once if it is not backed up or down). */
  drained(peerId: string): Promise<void> {
    const socket = this.links.get(peerId)?.active?.socket;
    if (!socket || !socket.writableNeedDrain) return Promise.resolve();
    // One shared wait per socket, however many senders wait (no listener pile-up).
    let waiting = this.drainWaits.get(socket);
    if (!waiting) {
      waiting = new Promise((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          this.drainWaits.delete(socket);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
      this.drainWaits.set(socket, waiting);
    }
    return waiting;
  }

  /** Dial now rather than at the end of the backoff, e.g. when heartbeats say the peer is back. */
  redialNow(peerId: string): void {
    const link = this.links.get(peerId);
    if (!link || link.active || link.dialing) return;
    if (link.timer) clearTimeout(link.timer);
    link.timer = null;
    link.backoffMs = BackoffMinMs;
    this.schedule(link, 0);
  }

  /** Takes a connection that arrived on the peer port with ALPN understudy/1. */
  accept(socket: TLSSocket): void {
    const hash = peerKeyHash(socket);
    const peerId = hash ? nodeIdFromKeyHash(hash) : null;
    const link = peerId ? this.links.get(peerId) : undefined;
    if (!link || !hash || !hash.equals(link.peer.keyHash)) {
      this.emit('refused', 'a connection presented a key that is not pinned', { remote: socket.remoteAddress ?? 'unknown', peer: null });
      socket.destroy();
      return;
    }
    this.attach(socket, link, false);
  }

  stop(): void {
    this.stopped = true;
    for (const link of this.links.values()) this.closeLink(link);
  }

  private schedule(link: PeerLink, delayMs: number): void {
    // A link dropped by setPeers never dials again: when the peer is added back it gets a new
    // link, and two links to one peer would replace each other's connection forever.
    if (this.stopped || link.timer || this.links.get(link.peer.id) !== link || !dialsPeer(this.identity.nodeId, link.peer.id)) return;
    link.timer = setTimeout(() => {
      link.timer = null;
      this.dial(link);
    }, delayMs);
  }

  private dial(link: PeerLink): void {
    if (this.stopped || link.active || link.dialing || this.links.get(link.peer.id) !== link) return;
    const { host, port } = link.peer;
    const socket = connect(clientTlsOptions(this.identity, Alpn.link, host, port));
    const conn = this.attach(socket, link, true);
    link.dialing = conn;
    socket.once('secureConnect', () => {
      const hash = peerKeyHash(socket);
      if (!hash || !hash.equals(link.peer.keyHash)) {
        this.emit('refused', `the node at ${formatAddress(host, port)} presented a key that is not pinned`, { remote: formatAddress(host, port), peer: link.peer.id });
        conn.close('unpinned key');
        return;
      }
      conn.send(this.hello());
    });
  }

  private attach(socket: TLSSocket, link: PeerLink, outgoing: boolean): FramedSocket<LinkMessage> {
    let greeted = false;
    const remote = socket.remoteAddress ?? formatAddress(link.peer.host, link.peer.port);
    const helloTimer = setTimeout(() => conn.close('no hello in time'), HelloTimeoutMs);
    const conn: FramedSocket<LinkMessage> = new FramedSocket(socket, {
      schema: LinkMessageSchema,
      maxFrameBytes: MaxFrameBytes.link,
      bodyTypes: LinkBodyMessages,
      onMessage: (message, body) => {
        if (message.t !== 'hello') {
          if (!greeted) return conn.close(`expected hello, got ${message.t}`);
          if (link.active === conn) this.emit('message', link.peer.id, message, body);
          return;
        }
        switch (message.t) {
          case 'hello': {
            if (greeted) return conn.close('a second hello on one connection');
            if (message.nodeId !== link.peer.id) return conn.close('hello names a node id other than the key presented');
            greeted = true;
            clearTimeout(helloTimer);
            if (!outgoing) conn.send(this.hello());
            const old = link.active;
            link.active = conn;
            if (link.dialing === conn) link.dialing = null;
            link.backoffMs = BackoffMinMs;
            if (old && old !== conn) old.close('replaced by a newer connection');
            this.emit('connected', link.peer.id, message);
            return;
          }
        }
      },
      onClose: (reason) => {
        clearTimeout(helloTimer);
        if (link.dialing === conn) link.dialing = null;
        if (reason && !greeted && !reason.startsWith('socket error')) {
          this.emit('refused', reason, { remote, peer: link.peer.id });
        } else if (reason && !greeted) {
          this.log.debug({ peer: link.peer.id, reason }, 'link connection failed');
        }
        if (link.active === conn) {
          link.closedBytes.sent += conn.sentBytes;
          link.closedBytes.received += conn.receivedBytes;
          link.active = null;
          this.emit('disconnected', link.peer.id, reason ?? 'connection closed');
        }
        if (!link.active && !this.stopped) {
          const delay = link.backoffMs;
          link.backoffMs = Math.min(link.backoffMs * 2, BackoffMaxMs);
          this.schedule(link, delay);
        }
      },
    });
    return conn;
  }

  private closeLink(link: PeerLink): void {
    if (link.timer) clearTimeout(link.timer);
    link.timer = null;
    link.active?.close(null);
    link.dialing?.close(null);
  }
}
