/**
 * One running node: owns the home's lock and store, its identity, the peer port (data link
 * and pairing), the heartbeat worker and the control endpoint, and turns what they report
 * into status and recorded events.
 */
import { EventEmitter } from 'node:events';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { CommandName, EventRecord, EventType, NodeRole, PeerState, PeerStatus, RttStats, StatusReport } from '../contract/control.js';
import { Version } from '../version.js';
import { isoTime, systemClock, type Clock } from './clock.js';
import { ControlServer } from './control/control-server.js';
import { assertNever, UnderstudyError } from './errors.js';
import { Heartbeat, listenError } from './heartbeat/heartbeat.js';
import { detectorSettings } from './heartbeat/detector.js';
import { checkHome, HomeLock } from './home.js';
import { loadIdentity, publicKeyHash, shortNodeId, type Identity } from './identity/identity.js';
import { answerPairing, joinPeer } from './identity/pairing.js';
import { PairingCodeBook } from './identity/pairing-code.js';
import { dialsPeer, PeerLinks, type Hello } from './link/peer-link.js';
import { Alpn, formatAddress, parseAddress, serverTlsOptions } from './link/tls.js';
import { Store, type PeerRecord } from './store/store.js';
import type { LinkMessage } from './link/messages.js';
import { DefaultHookSettings, runHook, type HookName, type HookSettings } from './cluster/hooks.js';
import { ProtectedObjects } from './objects/objects.js';

export interface NodeOptions {
  home: string;
  log: Logger;
  /** Heartbeat interval. @default 200 ms */
  heartbeatIntervalMs?: number;
  clock?: Clock;
  /** The home's lock, when the caller took it already (serve takes it before opening the log). */
  lock?: HomeLock;
}

interface PeerRuntime {
  state: PeerState;
  since: Date;
  rttMs: number | null;
  rtt: RttStats | null;
  lastSeenAt: Date | null;
}

/** How often the check hook runs on the primary. */
const CheckIntervalMs = 5000;
/** After a role change, no check-triggered switchover for this long: the roles never ping-pong. */
const CheckCooldownMs = 10 * 60_000;

/** Repeated refusals from one remote are recorded once a minute, so a flood cannot fill the log. */
const RefusalEventIntervalMs = 60_000;

export interface NodeEvents {
  event: [EventRecord];
  /** Something the node cannot run without failed; the owner should stop it. */
  fatal: [Error];
}

export class UnderstudyNode extends EventEmitter<NodeEvents> {
  private readonly runtime = new Map<string, PeerRuntime>();
  private readonly refusals = new Map<string, { atMs: number; suppressed: number }>();
  private readonly codes: PairingCodeBook;
  private readonly startedAt: Date;
  private role: NodeRole;
  private epoch: number;
  private peerServer: Server | null = null;
  private heartbeat: Heartbeat | null = null;
  private control: ControlServer | null = null;
  private links: PeerLinks | null = null;
  private objects: ProtectedObjects | null = null;
  private stopping = false;
  /** The paired peer's id (the one peer replication talks to), kept in step by applyPeers. */
  private peerIdCache: string | null = null;
  private readonly peerSockets = new Set<TLSSocket>();
  private roleSince: Date;
  private switching = false;
  /** A switchover run on this backup, waiting for the primary's handover or refusal. */
  private readonly switchoverRequests = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  private nextSwitchoverRequest = 1;
  /** A handover sent and not yet confirmed: sent again whenever the link comes back. */
  private pendingHandover: number | null = null;

  private constructor(
    readonly home: string,
    private readonly store: Store,
    private readonly lock: HomeLock,
    readonly identity: Identity,
    private readonly settings: { name: string; listenHost: string; listenPort: number },
    private readonly options: NodeOptions,
    private readonly log: Logger,
  ) {
    super();
    const clock = options.clock ?? systemClock;
    this.codes = new PairingCodeBook(clock);
    this.startedAt = clock.now();
    const saved = store.nodeSettings();
    this.role = saved.role;
    this.epoch = saved.epoch;
    this.roleSince = this.startedAt;
  }

  /** Starts a node on its home; fails with a clear error and leaves nothing running. */
  static async start(options: NodeOptions): Promise<UnderstudyNode> {
    const home = checkHome(options.home);
    const identity = loadIdentity(home);
    const lock = options.lock ?? HomeLock.acquire(home);
    let store: Store | null = null;
    let node: UnderstudyNode | null = null;
    try {
      store = Store.open(home);
      const settings = store.nodeSettings();
      const log = options.log.child({ node: shortNodeId(identity.nodeId) });
      node = new UnderstudyNode(home, store, lock, identity, settings, options, log);
      await node.open();
      return node;
    } catch (error) {
      if (node) await node.stop({ recordEvent: false });
      else {
        store?.close();
        lock.release();
      }
      throw error;
    }
  }

  private async open(): Promise<void> {
    const { listenHost, listenPort } = this.settings;
    this.peerServer = await this.listenPeerPort(listenHost, listenPort);

    const beat = detectorSettings(this.options.heartbeatIntervalMs);
    this.heartbeat = new Heartbeat(
      { nodeId: this.identity.nodeId, certPem: this.identity.certPem, keyPem: this.identity.keyPem, listenHost, listenPort: listenPort + 1, ...beat },
      this.log.child({ sub: 'heartbeat' }),
    );
    this.heartbeat.on('peer', (report) => this.onBeatReport(report));
    this.heartbeat.on('failed', (error) => {
      this.record('node.error', `heartbeats stopped: ${error.message}; the node shuts down rather than run blind`, { error: error.message });
      this.emit('fatal', error);
    });
    await this.heartbeat.start();
    this.heartbeat.setEpoch(this.epoch);

    this.links = new PeerLinks(this.identity, () => this.hello(), this.log.child({ sub: 'link' }));
    this.links.on('connected', (peerId, hello) => this.onLinkConnected(peerId, hello));
    this.links.on('disconnected', (peerId, reason) => {
      this.log.info({ peer: peerId, reason }, 'data link disconnected');
      this.objects?.linkChanged(false);
    });
    this.links.on('message', (peerId, message, body) => {
      if (isRoleMessage(message)) void this.onRoleMessage(peerId, message);
      else this.objects?.onMessage(message, body);
    });

    const links = this.links;
    // Asked for every block sent: the peer's id is cached rather than read from the store.
    const peerId = () => this.peerIdCache;
    this.objects = new ProtectedObjects({
      home: this.home,
      db: this.store.database,
      log: this.log.child({ sub: 'objects' }),
      event: (type, message, data) => this.record(type as EventType, message, data),
      peer: {
        send: (message, body) => {
          const id = peerId();
          return id ? links.send(id, message, body) : false;
        },
        drained: () => {
          const id = peerId();
          return id ? links.drained(id) : Promise.resolve();
        },
        connected: () => {
          const id = peerId();
          return id ? links.isConnected(id) : false;
        },
        backedUp: () => {
          const id = peerId();
          return id ? links.backedUp(id) : false;
        },
        epoch: () => this.epoch,
      },
      source: {
        ...(process.env.UNDERSTUDY_RESCAN_MS ? { rescanMs: Number(process.env.UNDERSTUDY_RESCAN_MS) } : {}),
      },
    });
    await this.objects.start();
    this.links.on('refused', (reason, details) => this.noteRefusal('link.refused', reason, details.remote));

    this.control = new ControlServer(this.home, (command, params) => this.command(command, params), this.log.child({ sub: 'control' }));
    await this.control.start();

    this.applyPeers();
    this.scheduleCheck();
    this.record('node.started', `node '${this.settings.name}' started (${this.role}, epoch ${this.epoch}) on ${this.listenAddress()}`, {
      role: this.role,
      epoch: this.epoch,
      version: Version,
    });
  }

  private listenPeerPort(host: string, port: number): Promise<Server> {
    const server = createServer(serverTlsOptions(this.identity, [Alpn.link, Alpn.pair]), (socket) => this.onPeerConnection(socket));
    server.on('tlsClientError', (error, socket) => {
      this.log.debug({ remote: socket.remoteAddress, error: error.message }, 'TLS handshake refused');
      // Node reports a handshake timeout here but leaves the socket open: drop it ourselves.
      socket.destroy();
    });
    return new Promise((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => reject(listenError(host, port, error.code ?? '', error.message, 'peer')));
      server.listen(port, host, () => resolve(server));
    });
  }

  private onPeerConnection(socket: TLSSocket): void {
    this.peerSockets.add(socket);
    socket.on('close', () => this.peerSockets.delete(socket));
    socket.on('error', () => socket.destroy());
    switch (socket.alpnProtocol) {
      case Alpn.link:
        this.links?.accept(socket);
        return;
      case Alpn.pair:
        if (!this.codes.hasIssuedAny()) {
          // Nothing to pair with: refuse without reading a byte of what the stranger sends.
          socket.destroy();
          return;
        }
        void answerPairing(socket, {
          identity: this.identity,
          name: this.settings.name,
          listen: { host: this.settings.listenHost, port: this.settings.listenPort },
          log: this.log.child({ sub: 'pair' }),
          codes: this.codes,
          pairedWith: () => this.pairedPeer(),
          commit: (peer) => this.completePairing(peer, 'primary', 1),
          refused: ({ message, remote }) => this.noteRefusal('pair.refused', `pairing refused: ${message}`, remote),
        });
        return;
      default:
        this.noteRefusal('link.refused', 'a connection offered no protocol this node speaks', socket.remoteAddress ?? 'unknown');
        socket.destroy();
    }
  }

  private async command(command: CommandName, params: unknown): Promise<unknown> {
    switch (command) {
      case 'node:status':
        return this.status();
      case 'pair:code':
        return this.issuePairingCode();
      case 'pair:join': {
        const { peer, code } = params as { peer: string; code: string };
        return { peer: await this.joinAsBackup(peer, code) };
      }
      case 'events:list': {
        const { afterId, limit } = params as { afterId?: number; limit?: number };
        return this.events({ afterId, limit });
      }
      case 'events:subscribe':
        return { lastId: this.store.listEvents({ limit: 1 })[0]?.id ?? 0 };
      case 'object:protect': {
        const { kind, source, target, excludes } = params as { kind: 'folder' | 'sqlite'; source: string; target?: string; excludes: string[] };
        if (kind === 'sqlite') return this.objects!.protectDatabase(this.role, source, target);
        return this.objects!.protectFolder(this.role, source, target, excludes);
      }
      case 'object:unprotect': {
        const { id } = params as { id: string };
        await this.objects!.unprotect(id);
        return { id };
      }
      case 'dev:block-main':
        return blockMainThread((params as { ms: number }).ms);
      case 'cluster:switchover':
        return this.switchover();
      case 'cluster:hooks-set':
        return this.setHooks(params as Partial<HookSettings>);
      default:
        return assertNever(command, 'command');
    }
  }

  status(): StatusReport {
    return {
      node: {
        id: this.identity.nodeId,
        name: this.settings.name,
        role: this.role,
        epoch: this.epoch,
        listen: this.listenAddress(),
        heartbeatPort: this.settings.listenPort + 1,
        version: Version,
        pid: process.pid,
        startedAt: isoTime(this.startedAt),
        roleSince: isoTime(this.roleSince),
      },
      peers: this.store.listPeers().map((peer) => this.peerStatus(peer)),
      objects: this.objects?.status() ?? [],
    };
  }

  events(options: { afterId?: number | undefined; limit?: number | undefined } = {}): EventRecord[] {
    return this.store.listEvents(options).map(toContractEvent);
  }

  private issuePairingCode(): { code: string; expiresAt: string } {
    const paired = this.pairedPeer();
    if (paired) {
      throw new UnderstudyError('already-paired', `this node is already paired with '${paired.name}'`, {
        hint: 'a pair has one primary and one backup',
      });
    }
    const issued = this.codes.issue(publicKeyHash(this.identity.certPem));
    // The code itself is a secret: it never goes into the log or the event record.
    this.record('pair.code-issued', `a pairing code was issued; it expires at ${isoTime(issued.expiresAt)}`, { expiresAt: isoTime(issued.expiresAt) });
    return { code: issued.text, expiresAt: isoTime(issued.expiresAt) };
  }

  private async joinAsBackup(peerText: string, code: string): Promise<PeerStatus> {
    const address = parseAddress(peerText);
    if (!address) {
      throw new UnderstudyError('bad-address', `'${peerText}' is not an address`, { hint: 'give the primary as HOST:PORT, e.g. 192.168.1.10:7420' });
    }
    const peer = await joinPeer(
      {
        identity: this.identity,
        name: this.settings.name,
        listen: { host: this.settings.listenHost, port: this.settings.listenPort },
        log: this.log.child({ sub: 'pair' }),
        pairedWith: () => this.pairedPeer(),
        pin: (record, epoch) => this.completePairing(record, 'backup', epoch),
        unpin: (peerId) => this.undoPairing(peerId),
      },
      address,
      code,
    );
    return this.peerStatus(peer);
  }

  private completePairing(peer: PeerRecord, role: NodeRole, epoch: number): void {
    this.store.recordPairing(peer, { role, epoch });
    this.role = role;
    this.epoch = epoch;
    this.heartbeat?.setEpoch(epoch);
    this.applyPeers();
    this.record('pair.completed', `paired with '${peer.name}' (${formatAddress(peer.host, peer.port)}); this node is the ${role}, epoch ${epoch}`, {
      peer: peer.id,
      peerName: peer.name,
      role,
      epoch,
    });
  }

  private undoPairing(peerId: string): void {
    this.store.removePairing(peerId, { role: 'standalone', epoch: 0 });
    this.role = 'standalone';
    this.epoch = 0;
    this.heartbeat?.setEpoch(0);
    this.applyPeers();
    this.log.warn({ peer: peerId }, 'pairing did not complete on the other side; the pin was taken back');
  }

  private pairedPeer(): PeerRecord | null {
    return this.store.listPeers()[0] ?? null;
  }

  /** Tells the heartbeat worker and the link who the peers are now. */
  private applyPeers(): void {
    const peers = this.store.listPeers();
    this.peerIdCache = peers[0]?.id ?? null;
    for (const peer of peers) {
      if (!this.runtime.has(peer.id)) {
        this.runtime.set(peer.id, { state: 'down', since: new Date(), rttMs: null, rtt: null, lastSeenAt: null });
      }
    }
    this.heartbeat?.setPeers(
      peers.map((peer) => ({
        id: peer.id,
        keyHash: peer.keyHash.toString('hex'),
        host: peer.host,
        port: peer.port + 1,
        dial: dialsPeer(this.identity.nodeId, peer.id),
      })),
    );
    this.links?.setPeers(peers);
  }

  private onBeatReport(report: { id: string; state: PeerState; reason: string; rttMs: number | null; rtt: RttStats | null; lastSeenAt: number | null; changed: boolean }): void {
    const runtime = this.runtime.get(report.id);
    if (!runtime) return;
    runtime.rttMs = report.rttMs;
    runtime.rtt = report.rtt;
    runtime.lastSeenAt = report.lastSeenAt === null ? null : new Date(report.lastSeenAt);
    if (!report.changed || report.state === runtime.state) return;
    runtime.state = report.state;
    runtime.since = new Date();
    const peer = this.store.listPeers().find((p) => p.id === report.id);
    const name = peer?.name ?? shortNodeId(report.id);
    const type: EventType = `peer.${report.state}`;
    this.record(type, `peer '${name}' is ${report.state}: ${report.reason}`, { peer: report.id, peerName: name, reason: report.reason });
    // Heartbeats come back before the data link's backoff would retry: dial it now.
    if (report.state === 'up') this.links?.redialNow(report.id);
  }

  private onLinkConnected(peerId: string, hello: Hello): void {
    this.log.info({ peer: peerId, role: hello.role, epoch: hello.epoch }, 'data link connected');
    this.store.updatePeerSeen(peerId, { name: hello.name, role: hello.role });
    if (hello.role === 'primary' && this.role === 'primary' && hello.epoch > this.epoch) {
      // The peer became primary in a later epoch: this node stops acting as primary at once.
      void this.changeRole('backup', hello.epoch, peerId, `'${hello.name}' is primary in epoch ${hello.epoch}`);
      return;
    }
    if (this.pendingHandover !== null && hello.epoch < this.pendingHandover) {
      this.links?.send(peerId, { t: 'role.handover', epoch: this.epoch, newEpoch: this.pendingHandover, reqId: 0 });
    }
    this.objects?.linkChanged(true);
  }

  // --- roles --------------------------------------------------------------------------------

  /**
   * A planned switchover. On the primary: refuse unless the backup is up and in sync; drain
   * every object; step down (nothing is captured or shipped as primary from here on) and
   * persist the new epoch; then hand over — the backup promotes in that epoch. At no moment
   * do both nodes act as primary. On the backup: ask the primary and wait for the handover.
   */
  private async switchover(): Promise<{ ms: number; role: NodeRole; epoch: number }> {
    const started = performance.now();
    const peer = this.pairedPeer();
    if (!peer || (this.role !== 'primary' && this.role !== 'backup')) {
      throw new UnderstudyError('usage', 'this node is not paired', { hint: 'pair two nodes first' });
    }
    if (this.switching) throw new UnderstudyError('switchover-refused', 'a switchover is already running', { hint: 'wait for it to finish' });
    if (!this.links?.isConnected(peer.id) || this.runtime.get(peer.id)?.state !== 'up') {
      throw this.refuse(`'${peer.name}' is not reachable`, 'switch over when both nodes are up');
    }
    this.switching = true;
    try {
      if (this.role === 'backup') {
        await this.askForHandover(peer.id);
      } else {
        await this.handOver(peer);
      }
      return { ms: Math.round(performance.now() - started), role: this.role, epoch: this.epoch };
    } finally {
      this.switching = false;
    }
  }

  private refuse(reason: string, hint: string): UnderstudyError {
    this.record('switchover.refused', `switchover refused: ${reason}`, { reason });
    return new UnderstudyError('switchover-refused', `switchover refused: ${reason}`, { hint });
  }

  private async handOver(peer: PeerRecord): Promise<void> {
    const started = performance.now();
    const behindNow = this.objects!.status().filter((o) => o.state !== 'in-sync' || o.pending > 0);
    if (behindNow.length > 0) {
      throw this.refuse(`the backup is not in sync (${behindNow.map((o) => `${o.id}: ${o.state}, ${o.pending} pending`).join('; ')})`, 'wait until status shows every object in-sync');
    }
    this.record('switchover.started', `switchover to '${peer.name}' started`, { peer: peer.id });
    // The application stops first, so that what it wrote last is in the drain.
    if (!(await this.runHook('stop'))) {
      await this.runHook('start');
      throw this.refuse('the stop hook failed (the start hook ran again)', "see the hook's output in the events");
    }
    const behind = await this.objects!.drain(5000);
    if (behind.length > 0) {
      await this.runHook('start');
      throw this.refuse(`the backup did not catch up within 5 s: ${behind.join('; ')}`, 'try again once changes slow down');
    }
    const drainedMs = Math.round(performance.now() - started);
    const newEpoch = this.epoch + 1;
    await this.changeRole('backup', newEpoch, peer.id, `switchover to '${peer.name}'`, { stopHookRan: true });
    this.pendingHandover = newEpoch;
    const acked = new Promise<void>((resolve) => (this.handoverAcked = resolve));
    this.links?.send(peer.id, { t: 'role.handover', epoch: this.epoch, newEpoch, reqId: this.handoverReqId ?? 0 });
    const confirmed = await Promise.race([acked.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))]);
    if (!confirmed) {
      throw new UnderstudyError('switchover-incomplete', `this node stepped down, but '${peer.name}' has not confirmed it took over`, {
        hint: 'the handover is sent again when the link comes back; check status on both nodes',
      });
    }
    this.record('switchover.done', `switchover to '${peer.name}' done in ${Math.round(performance.now() - started)} ms (drained in ${drainedMs} ms); this node is the backup, epoch ${newEpoch}`, {
      peer: peer.id,
      ms: Math.round(performance.now() - started),
      drainedMs,
      epoch: newEpoch,
    });
  }

  // --- hooks ----------------------------------------------------------------------------------

  private hooks(): HookSettings {
    return { ...DefaultHookSettings, ...(this.store.getSetting<Partial<HookSettings>>('cluster.hooks') ?? {}) };
  }

  private setHooks(changes: Partial<HookSettings>): HookSettings {
    const hooks = this.hooks();
    for (const name of ['start', 'stop', 'check'] as const) {
      const command = changes[name];
      if (command !== undefined) hooks[name] = command === null || command.trim() === '' ? null : command;
    }
    if (changes.checkFailures !== undefined) hooks.checkFailures = changes.checkFailures;
    if (changes.timeoutMs !== undefined) hooks.timeoutMs = changes.timeoutMs;
    this.store.setSetting('cluster.hooks', hooks);
    this.scheduleCheck();
    return hooks;
  }

  /** Runs one hook (if set) and records what it did; resolves true when it succeeded or there is none. */
  private async runHook(name: HookName): Promise<boolean> {
    const hooks = this.hooks();
    const command = hooks[name];
    if (!command) return true;
    const result = await runHook(name, command, hooks.timeoutMs, { UNDERSTUDY_ROLE: this.role, UNDERSTUDY_EPOCH: String(this.epoch), UNDERSTUDY_HOME: this.home });
    const status = result.timedOut ? `timed out after ${hooks.timeoutMs} ms` : result.exitCode === null ? 'could not run' : `exit ${result.exitCode}`;
    // A passing health check every few seconds would flood the log: only failures and changes are recorded.
    if (name !== 'check' || !result.ok || this.checkFailures > 0) {
      this.record(result.ok ? 'hook.ran' : 'hook.failed', `${name} hook ${result.ok ? 'ran' : 'failed'} (${status}, ${result.ms} ms)`, {
        hook: name,
        command,
        exitCode: result.exitCode,
        timedOut: result.timedOut,
        ms: result.ms,
        output: result.output,
      });
    }
    return result.ok;
  }

  private checkTimer: NodeJS.Timeout | null = null;
  private checkFailures = 0;
  /** No check-triggered switchover before this (performance.now()): the roles must not ping-pong. */
  private checkQuietUntil = 0;

  /** The health probe runs on the primary every CheckIntervalMs; enough failures in a row hand over to the backup. */
  private scheduleCheck(): void {
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.checkTimer = null;
    if (this.stopping || !this.hooks().check) return;
    this.checkTimer = setTimeout(() => void this.runCheck(), CheckIntervalMs);
    this.checkTimer.unref();
  }

  private async runCheck(): Promise<void> {
    if (this.role === 'primary' && !this.switching) {
      const ok = await this.runHook('check');
      this.checkFailures = ok ? 0 : this.checkFailures + 1;
      const limit = this.hooks().checkFailures;
      if (this.checkFailures >= limit && performance.now() < this.checkQuietUntil) {
        this.log.warn({ failures: this.checkFailures }, 'health check keeps failing; no automatic switchover during the cool-down after the last role change');
      }
      if (this.checkFailures >= limit && performance.now() >= this.checkQuietUntil && this.role === 'primary') {
        this.checkFailures = 0;
        this.checkQuietUntil = performance.now() + CheckCooldownMs;
        this.log.warn({ limit }, 'health check failed repeatedly; switching over');
        try {
          await this.switchover();
        } catch (error) {
          this.log.warn({ err: (error as Error).message }, 'check-triggered switchover did not happen');
        }
      }
    } else {
      this.checkFailures = 0;
    }
    this.scheduleCheck();
  }

  private handoverAcked: (() => void) | null = null;
  private handoverReqId: number | null = null;

  private askForHandover(peerId: string): Promise<void> {
    const reqId = this.nextSwitchoverRequest++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.switchoverRequests.delete(reqId);
        reject(new UnderstudyError('timeout', 'the primary did not hand over within 15 s', { hint: "see 'understudy events' on both nodes" }));
      }, 15_000);
      this.switchoverRequests.set(reqId, {
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (error) => (clearTimeout(timer), reject(error)),
      });
      if (!this.links?.send(peerId, { t: 'role.switchover', epoch: this.epoch, reqId })) {
        this.switchoverRequests.delete(reqId);
        clearTimeout(timer);
        reject(this.refuse('the data link to the primary is down', 'switch over when both nodes are up'));
      }
    });
  }

  private async onRoleMessage(peerId: string, message: RoleMessage): Promise<void> {
    switch (message.t) {
      case 'role.switchover': {
        if (this.role !== 'primary' || this.switching) {
          this.links?.send(peerId, { t: 'role.refused', epoch: this.epoch, reqId: message.reqId, reason: this.switching ? 'a switchover is already running' : 'this node is not the primary' });
          return;
        }
        const peer = this.pairedPeer();
        if (!peer) return;
        this.switching = true;
        this.handoverReqId = message.reqId;
        try {
          await this.handOver(peer);
        } catch (error) {
          if (this.role === 'primary') this.links?.send(peerId, { t: 'role.refused', epoch: this.epoch, reqId: message.reqId, reason: (error as Error).message });
        } finally {
          this.switching = false;
          this.handoverReqId = null;
        }
        return;
      }
      case 'role.refused': {
        const request = this.switchoverRequests.get(message.reqId);
        this.switchoverRequests.delete(message.reqId);
        request?.reject(new UnderstudyError('switchover-refused', message.reason.replace(/^switchover refused: /, 'switchover refused by the primary: '), { hint: 'see the primary\'s events' }));
        return;
      }
      case 'role.handover': {
        if (message.newEpoch > this.epoch && this.role !== 'witness') {
          await this.changeRole('primary', message.newEpoch, peerId, 'handed over by the primary');
        }
        if (this.role === 'primary' && this.epoch === message.newEpoch) this.links?.send(peerId, { t: 'role.handover-ack', epoch: this.epoch });
        const request = this.switchoverRequests.get(message.reqId);
        this.switchoverRequests.delete(message.reqId);
        request?.resolve();
        return;
      }
      case 'role.handover-ack':
        if (message.epoch === this.pendingHandover) {
          this.pendingHandover = null;
          this.handoverAcked?.();
          this.handoverAcked = null;
        }
        return;
      default:
        return;
    }
  }

  /** Persists the new role and epoch (fsync) before acting on them, then reverses every object. */
  private async changeRole(role: 'primary' | 'backup', epoch: number, peerId: string, why: string, options: { stopHookRan?: boolean } = {}): Promise<void> {
    const previous = this.role;
    // Stepping down without a switchover (a later primary appeared): the application stops first.
    if (previous === 'primary' && role === 'backup' && !options.stopHookRan) await this.runHook('stop');
    this.store.setRoles({ role, epoch }, { id: peerId, role: role === 'primary' ? 'backup' : 'primary' });
    this.role = role;
    this.epoch = epoch;
    this.roleSince = new Date();
    this.heartbeat?.setEpoch(epoch);
    const started = performance.now();
    await this.objects?.reverse(role);
    const type: EventType = role === 'primary' ? 'role.promoted' : 'role.demoted';
    this.record(type, `this node is now the ${role} (was ${previous}), epoch ${epoch}: ${why}`, { role, previous, epoch, reverseMs: Math.round(performance.now() - started) });
    if (role === 'primary') {
      // A node that became primary is not switched away again by its own checks at once.
      this.checkQuietUntil = performance.now() + CheckCooldownMs;
      await this.runHook('start');
    }
  }

  private hello(): Hello {
    return { t: 'hello', nodeId: this.identity.nodeId, name: this.settings.name, role: this.role, epoch: this.epoch, position: { epoch: this.epoch, seq: 0 } };
  }

  private peerStatus(peer: PeerRecord): PeerStatus {
    const runtime = this.runtime.get(peer.id);
    const state = runtime?.state ?? 'down';
    return {
      id: peer.id,
      name: peer.name,
      role: peer.role,
      address: formatAddress(peer.host, peer.port),
      state,
      rttMs: state === 'up' && runtime?.rttMs != null ? Math.max(1, Math.ceil(runtime.rttMs)) : null,
      rtt: runtime?.rtt ?? null,
      lastSeenAt: runtime?.lastSeenAt ? isoTime(runtime.lastSeenAt) : null,
      stateSince: isoTime(runtime?.since ?? this.startedAt),
      link: this.links?.isConnected(peer.id) ? 'connected' : 'disconnected',
      pairedAt: peer.pairedAt,
    };
  }

  private listenAddress(): string {
    return formatAddress(this.settings.listenHost, this.settings.listenPort);
  }

  private noteRefusal(type: 'link.refused' | 'pair.refused', reason: string, remote: string): void {
    this.log.info({ remote, reason }, type === 'pair.refused' ? 'pairing refused' : 'connection refused');
    const key = `${type}|${remote}`;
    const now = performance.now();
    const last = this.refusals.get(key);
    if (last && now - last.atMs < RefusalEventIntervalMs) {
      last.suppressed += 1;
      return;
    }
    const suppressed = last?.suppressed ?? 0;
    this.refusals.set(key, { atMs: now, suppressed: 0 });
    const more = suppressed > 0 ? ` (and ${suppressed} more from there in the last minute)` : '';
    this.record(type, `${reason}, from ${remote}${more}`, { remote, reason, suppressed });
  }

  private record(type: EventType, message: string, data: Record<string, unknown>): void {
    const stored = this.store.addEvent(isoTime(new Date()), type, message, data);
    const event = toContractEvent(stored);
    this.log.info({ event: type, ...data }, message);
    this.control?.broadcast(event);
    this.emit('event', event);
  }

  /** Stops everything the node runs, records it, and frees the home. Idempotent. */
  async stop(options: { recordEvent?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.checkTimer) clearTimeout(this.checkTimer);
    this.links?.stop();
    const server = this.peerServer;
    if (server) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of this.peerSockets) socket.destroy();
      });
    }
    await this.heartbeat?.stop();
    await this.objects?.stop();
    if (options.recordEvent ?? true) this.record('node.stopped', `node '${this.settings.name}' stopped`, {});
    await this.control?.stop();
    this.store.close();
    this.lock.release();
  }
}

/** Busy-waits the main thread, standing in for a long synchronous call. Development only. */
function blockMainThread(ms: number): { blockedMs: number } {
  if (process.env.UNDERSTUDY_DEV !== '1') {
    throw new UnderstudyError('usage', "'dev:block-main' is a development command", { hint: 'start the node with UNDERSTUDY_DEV=1 to use it' });
  }
  const start = performance.now();
  while (performance.now() - start < ms) {
    // Spin: a synchronous stall is the point.
  }
  return { blockedMs: Math.round(performance.now() - start) };
}

function toContractEvent(stored: { id: number; at: string; type: string; message: string; data: Record<string, unknown> | null }): EventRecord {
  return { ...(stored.data ?? {}), id: stored.id, at: stored.at, type: stored.type as EventType, message: stored.message };
}

type RoleMessage = Extract<LinkMessage, { t: `role.${string}` }>;

function isRoleMessage(message: { t: string }): message is RoleMessage {
  return message.t.startsWith('role.');
}
