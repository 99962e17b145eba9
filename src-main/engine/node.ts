/**
 * One running node: owns the home's lock and store, its identity, the peer port (data link
 * and pairing), the heartbeat worker and the control endpoint, and turns what they report
 * into status and recorded events.
 */
import { EventEmitter } from 'node:events';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import type { ClusterConfigView, ClusterSettings, EngineHost, FailoverPolicy, SetupState, RehearsalResult, SwitchoverReadiness, CommandName, EventRecord, EventType, NodeRole, PeerState, PeerStatus, RttStats, StatusReport } from '../contract/control.js';
import { Version } from '../version.js';
import { isoTime, systemClock, type Clock } from './clock.js';
import { ControlServer } from './control/control-server.js';
import { assertNever, UnderstudyError } from './errors.js';
import { Heartbeat, listenError } from './heartbeat/heartbeat.js';
import { detectorSettings } from './heartbeat/detector.js';
import { checkHome, HomeLock } from './home.js';
import { loadIdentity, nodeIdFromKeyHash, publicKeyHash, shortNodeId, type Identity } from './identity/identity.js';
import { FirstEpoch, type JoinAs } from './identity/pairing.js';
import { answerPairing, joinPeer } from './identity/pairing.js';
import { PairingCodeBook } from './identity/pairing-code.js';
import { dialsPeer, PeerLinks, type Hello } from './link/peer-link.js';
import { Alpn, formatAddress, parseAddress, serverTlsOptions } from './link/tls.js';
import { Store, type PeerRecord } from './store/store.js';
import type { LinkMessage } from './link/messages.js';
import { DefaultHookSettings, runHook, type HookName, type HookSettings } from './cluster/hooks.js';
import { ProtectedObjects } from './objects/objects.js';
import { LeaseGate } from './cluster/lease-gate.js';
import { machineMonoMs } from './cluster/lease-clock.js';
import type { KeeperReport } from './cluster/lease-keeper.js';
import { parseVip, releaseVip, takeVip, type VipSettings } from './cluster/vip.js';
import { NodeLicense } from './license/node-license.js';
import { switchoverReadiness } from './cluster/readiness.js';
import { ConsoleServer, DefaultConsolePort } from './console/console-server.js';
import { loadOrCreateConsoleToken } from './console/console-token.js';
import { fileURLToPath } from 'node:url';
import { browse, measure } from './setup/path-browser.js';
import { readSetup, saveSetup } from './setup/setup-state.js';
import { installService, serviceStatus } from './setup/service-install.js';

/** The built renderer the web console serves: src-renderer/dist, from dist/src-main/engine/. */
const RendererDir = fileURLToPath(new URL('../../../src-renderer/dist', import.meta.url));
import { leaseSettings, resolveConfig, setConfigValue, type ClusterConfig, type StoredConfig } from './cluster/cluster-config.js';

export interface NodeOptions {
  home: string;
  log: Logger;
  /** Heartbeat interval. @default 200 ms */
  heartbeatIntervalMs?: number;
  clock?: Clock;
  /** The home's lock, when the caller took it already (serve takes it before opening the log). */
  lock?: HomeLock;
  /** What hosts this engine, as status reports it. @default 'terminal' */
  host?: EngineHost;
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
  /** The lease the heartbeat worker keeps, readable here without waiting for a message. */
  private readonly gate = new LeaseGate();
  /** Whether this node acts as primary now (a primary of a pair with a witness needs a lease for that). */
  private acting = false;
  /** The start hook is owed: this node became primary and has not acted yet. */
  private startHookOwed = false;
  /** This node stepped down for want of a lease (its stop hook ran). */
  private fenced = false;
  /** The stop that follows a lapsed lease, while it runs (the stop hook, the virtual IP). */
  private fencing: Promise<void> | null = null;
  private demoting = false;
  /** The primary is down and we said so once (failover.needed / failover.waiting). */
  private failoverAlerted = false;
  private clusterTimer: NodeJS.Timeout | null = null;
  private readonly license: NodeLicense;
  private console: ConsoleServer | null = null;
  private consoleToken = '';

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
    this.license = new NodeLicense({
      store,
      counted: () => this.role !== 'witness',
      record: (type, message, data) => this.record(type, message, data),
      offer: (key) => {
        for (const peer of this.store.listPeers()) this.links?.send(peer.id, { t: 'license.offer', epoch: this.epoch, key });
      },
    });
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

    const config = this.config();
    const beat = detectorSettings(this.options.heartbeatIntervalMs ?? config.heartbeatMs);
    this.heartbeat = new Heartbeat(
      {
        nodeId: this.identity.nodeId,
        certPem: this.identity.certPem,
        keyPem: this.identity.keyPem,
        listenHost,
        listenPort: listenPort + 1,
        ...beat,
        home: this.home,
        leaseBuffer: this.gate.buffer,
        leaseMs: config.leaseMs,
      },
      this.log.child({ sub: 'heartbeat' }),
    );
    this.heartbeat.on('peer', (report) => this.onBeatReport(report));
    this.heartbeat.on('keeper', (report, mono) => void this.onKeeper(report, mono));
    this.heartbeat.on('failed', (error) => {
      this.record('node.error', `heartbeats stopped: ${error.message}; the node shuts down rather than run blind`, { error: error.message });
      this.emit('fatal', error);
    });
    await this.heartbeat.start();
    this.acting = this.role === 'primary' && !this.witnessPeer();
    if (this.acting) {
      this.record('role.acting', `this node acts as primary (epoch ${this.epoch}, no witness: no lease)`, { epoch: this.epoch, sinceMono: machineMonoMs() });
      void this.moveVip(true);
    }
    this.pushCluster();

    this.links = new PeerLinks(this.identity, () => this.hello(), this.log.child({ sub: 'link' }));
    this.links.on('connected', (peerId, hello) => this.onLinkConnected(peerId, hello));
    this.links.on('disconnected', (peerId, reason) => {
      this.log.info({ peer: peerId, reason }, 'data link disconnected');
      this.objects?.linkChanged(false);
    });
    this.links.on('message', (peerId, message, body) => {
      if (isRoleMessage(message)) void this.onRoleMessage(peerId, message);
      else if (message.t === 'cluster.members') this.onMembers(peerId, message);
      // A license is not a replicated change: whichever node holds the better key passes it on.
      else if (message.t === 'license.offer') this.license.fromPeer(message.key, this.peerName(peerId));
      else if (message.epoch < this.epoch) {
        // Epochs are fencing tokens: nothing from an older primary is ever applied.
        this.log.warn({ peer: peerId, type: message.t, epoch: message.epoch, ours: this.epoch }, 'message from an older epoch dropped');
      } else this.objects?.onMessage(message, body);
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
          if (!id) return false;
          // Checked before every change shipped: a primary whose lease ran out ships nothing.
          if (this.role === 'primary' && !this.mayActNow()) return false;
          return links.send(id, message, body);
        },
        drained: () => {
          const id = peerId();
          return id ? links.drained(id) : Promise.resolve();
        },
        connected: () => {
          const id = peerId();
          return id ? links.isConnected(id) && (this.role !== 'primary' || this.mayActNow()) : false;
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
    await this.startConsole();

    this.applyPeers();
    this.scheduleCheck();
    this.license.start();
    // The backup's lag decides whether it may promote by itself (maxPromoteLagMs): kept current.
    this.clusterTimer = setInterval(() => this.pushCluster(), 1000);
    this.clusterTimer.unref();
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
        // The peer port listens before the links exist (start-up): a connection taken then
        // would sit unanswered until the dialer's hello timed out (5 s); closed, it is redialed at once.
        if (this.links) this.links.accept(socket);
        else socket.destroy();
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
          pairedWith: (as) => (as === 'witness' ? this.witnessPeer() : this.pairedPeer()),
          epochFor: (as) => (as === 'witness' ? this.epoch : FirstEpoch),
          commit: (peer) => (peer.role === 'witness' ? this.addWitness(peer) : this.completePairing(peer, 'primary', FirstEpoch)),
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
        const { peer, code, as } = params as { peer: string; code: string; as?: JoinAs };
        return { peer: await this.join(peer, code, as ?? 'backup') };
      }
      case 'events:list': {
        const { afterId, limit } = params as { afterId?: number; limit?: number };
        return this.events({ afterId, limit });
      }
      case 'events:subscribe':
        return { lastId: this.store.listEvents({ limit: 1 })[0]?.id ?? 0 };
      case 'object:protect': {
        this.license.assertMayConfigure('protecting a new folder or database');
        if (this.role === 'witness') throw new UnderstudyError('usage', 'a witness protects nothing', { hint: 'protect folders and databases on the primary' });
        const { kind, source, target, excludes } = params as { kind: 'folder' | 'sqlite'; source: string; target?: string; excludes: string[] };
        if (kind === 'sqlite') return this.objects!.protectDatabase(this.role, source, target);
        return this.objects!.protectFolder(this.role, source, target, excludes);
      }
      case 'object:unprotect': {
        const { id } = params as { id: string };
        await this.objects!.unprotect(id);
        return { id };
      }
      case 'cluster:readiness':
        return this.readiness();
      case 'cluster:rehearse':
        return this.rehearse();
      case 'object:audit': {
        const { id, scrub } = params as { id?: string; scrub?: boolean };
        const outcomes = await this.objects!.audit(this.role, id, scrub ?? false);
        for (const o of outcomes) {
          const found = o.result === 'clean' ? 'nothing differed' : o.result === 'repaired' ? `${o.differences} difference(s) found and repaired` : `it could not complete: ${o.detail ?? 'see the events'}`;
          this.record(o.result === 'failed' ? 'audit.failed' : 'audit.done', `audit of ${o.id} (${o.scope}): ${found}`, { object: o.id, result: o.result, differences: o.differences, repaired: o.repaired, ms: o.ms });
        }
        return { objects: outcomes };
      }
      case 'console:url': {
        if (!this.console) throw new UnderstudyError('not-running', 'the web console is not running on this node', { hint: 'see the console.unavailable event for why' });
        return { url: `http://127.0.0.1:${this.console.port}/#token=${this.consoleToken}`, port: this.console.port };
      }
      case 'license:show':
        return this.license.view();
      case 'license:install':
        return this.license.install((params as { key: string }).key);
      case 'object:pause':
        return this.objects!.setPaused((params as { id: string }).id, true);
      case 'object:resume':
        return this.objects!.setPaused((params as { id: string }).id, false);
      case 'object:resync':
        return this.objects!.resync(this.role, (params as { id: string }).id);
      case 'object:history':
        return this.objects!.history((params as { id: string }).id);
      case 'dev:block-main':
        return blockMainThread((params as { ms: number }).ms);
      case 'cluster:switchover':
        return this.switchover();
      case 'cluster:hooks-set':
        return this.setHooks(params as Partial<HookSettings>);
      case 'cluster:failover':
        return this.forceFailover((params as { force: boolean }).force);
      case 'cluster:vip-set': {
        const { address, dev } = params as { address: string; dev: string };
        return this.setVip(address, dev);
      }
      case 'cluster:maintenance':
        return this.setMaintenance((params as { on: boolean }).on);
      case 'cluster:config-set': {
        const { key, value } = params as { key: string; value: string };
        return this.setConfig(key, value);
      }
      case 'cluster:settings':
        return this.clusterSettings();
      case 'cluster:failover-policy':
        this.setFailoverPolicy((params as { policy: FailoverPolicy }).policy);
        return this.clusterSettings();
      case 'fs:browse':
        return browse((params as { path?: string }).path, this.objects?.status().map((o) => ({ id: o.id, source: o.source })) ?? []);
      case 'fs:measure':
        return measure((params as { path: string }).path);
      case 'setup:get':
        return readSetup(this.store, this.role, this.listenSettings());
      case 'setup:save':
        return saveSetup(this.store, this.role, this.listenSettings(), params as Partial<SetupState>);
      case 'service:status':
        return serviceStatus(this.home);
      case 'service:install':
        return installService(this.home);
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
        leaseMs: this.role === 'primary' ? this.gate.remainingMs() : null,
        acting: this.role === 'primary' && this.mayActNow(),
        maintenance: this.maintenance(),
        failoverPolicy: this.failoverPolicy(),
        host: this.options.host ?? 'terminal',
      },
      peers: this.store.listPeers().map((peer) => this.peerStatus(peer)),
      objects: this.objects?.status() ?? [],
      witness: this.witnessStatus(),
      license: this.license.report(),
    };
  }

  events(options: { afterId?: number | undefined; limit?: number | undefined } = {}): EventRecord[] {
    return this.store.listEvents(options).map(toContractEvent);
  }

  private issuePairingCode(): { code: string; expiresAt: string } {
    const paired = this.pairedPeer();
    if (this.role === 'witness' || this.role === 'backup') {
      const peer = this.store.listPeers().find((p) => p.role === 'primary') ?? this.store.listPeers()[0];
      throw new UnderstudyError('already-paired', `this node is already paired with '${peer?.name ?? 'its primary'}' (it is the ${this.role}); pairing codes are printed on the primary`, { hint: 'a pair has one primary and one backup' });
    }
    if (paired && this.witnessPeer()) {
      throw new UnderstudyError('already-paired', `this node is already paired with '${paired.name}' and has the witness '${this.witnessPeer()!.name}'`, {
        hint: 'a pair has one primary, one backup and at most one witness',
      });
    }
    // A first backup is new configuration; a replacement for a lost one restores protection and is never held back.
    if (!paired && this.store.getSetting('cluster.hadBackup') !== true) this.license.assertMayConfigure('pairing a new backup');
    const issued = this.codes.issue(publicKeyHash(this.identity.certPem));
    // The code itself is a secret: it never goes into the log or the event record.
    this.record('pair.code-issued', `a pairing code was issued; it expires at ${isoTime(issued.expiresAt)}`, { expiresAt: isoTime(issued.expiresAt) });
    return { code: issued.text, expiresAt: isoTime(issued.expiresAt) };
  }

  private async join(peerText: string, code: string, as: JoinAs): Promise<PeerStatus> {
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
        as,
        pairedWith: () => this.store.listPeers()[0] ?? null,
        pin: (record, epoch) => this.completePairing(record, as, epoch),
        unpin: (peerId) => this.undoPairing(peerId),
      },
      address,
      code,
    );
    return this.peerStatus(peer);
  }

  private completePairing(peer: PeerRecord, role: NodeRole, epoch: number): void {
    this.store.recordPairing(peer, { role, epoch });
    this.store.setSetting('cluster.hadBackup', true);
    this.role = role;
    this.epoch = epoch;
    this.acting = role === 'primary' && !this.witnessPeer();
    this.applyPeers();
    this.record('pair.completed', `paired with '${peer.name}' (${formatAddress(peer.host, peer.port)}); this node is the ${role}, epoch ${epoch}`, {
      peer: peer.id,
      peerName: peer.name,
      role,
      epoch,
    });
    // Pairing makes the code's issuer primary: it acts from now on, and says so like every other start of a term.
    if (this.acting) this.record('role.acting', `this node acts as primary (epoch ${epoch}, no witness: no lease)`, { epoch, sinceMono: machineMonoMs() });
  }

  private undoPairing(peerId: string): void {
    this.store.removePairing(peerId, { role: 'standalone', epoch: 0 });
    this.role = 'standalone';
    this.epoch = 0;
    this.applyPeers();
    this.log.warn({ peer: peerId }, 'pairing did not complete on the other side; the pin was taken back');
  }

  /** The other node of the pair (the one replication talks to), never the witness. */
  private pairedPeer(): PeerRecord | null {
    if (this.role === 'witness') return null;
    return this.store.listPeers().find((peer) => peer.role !== 'witness') ?? null;
  }

  private witnessPeer(): PeerRecord | null {
    if (this.role === 'witness') return null;
    return this.store.listPeers().find((peer) => peer.role === 'witness') ?? null;
  }

  /** Tells the heartbeat worker and the link who the peers are now. */
  private applyPeers(): void {
    const peers = this.store.listPeers();
    this.peerIdCache = this.pairedPeer()?.id ?? null;
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
    // A primary that may not act keeps no data link to the backup: nothing can be shipped or
    // asked of it; it still hears, through the heartbeats, of a newer primary.
    const holdLink = this.role === 'primary' && !this.acting ? this.peerIdCache : null;
    this.links?.setPeers(peers.filter((peer) => peer.id !== holdLink));
    this.pushCluster();
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
    this.alertIfPrimaryLost(peer, report.state);
  }

  private onLinkConnected(peerId: string, hello: Hello): void {
    this.log.info({ peer: peerId, role: hello.role, epoch: hello.epoch }, 'data link connected');
    this.store.updatePeerSeen(peerId, { name: hello.name, role: hello.role });
    if (hello.role === 'primary' && this.role === 'primary' && hello.epoch > this.epoch) {
      // The peer became primary in a later epoch: this node stops acting as primary at once.
      void this.stepDownTo(hello.epoch, peerId, `'${hello.name}' is primary in epoch ${hello.epoch}`);
      return;
    }
    if (this.role === 'primary') {
      this.announceMembers();
      // The primary's maintenance setting wins when the two met again with different ones.
      if (peerId === this.pairedPeer()?.id) {
        this.links?.send(peerId, { t: 'role.maintenance', epoch: this.epoch, on: this.maintenance() });
        this.links?.send(peerId, { t: 'role.policy', epoch: this.epoch, policy: this.failoverPolicy() });
      }
    }
    // The peer already took over in the epoch we handed it (its ack may have been lost while its
    // data link waited for its first lease): the handover is confirmed.
    if (this.pendingHandover !== null && hello.role === 'primary' && hello.epoch >= this.pendingHandover) {
      this.pendingHandover = null;
      this.handoverAcked?.();
      this.handoverAcked = null;
    }
    if (this.pendingHandover !== null && hello.epoch < this.pendingHandover) {
      this.links?.send(peerId, { t: 'role.handover', epoch: this.epoch, newEpoch: this.pendingHandover, reqId: 0 });
    }
    const licenseKey = this.license.keyText();
    if (licenseKey) this.links?.send(peerId, { t: 'license.offer', epoch: this.epoch, key: licenseKey });
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
    if (this.maintenance()) throw this.refuse('maintenance mode is on', "turn it off with 'understudy maintenance off' first");
    if (this.role === 'primary' && !this.mayActNow()) throw this.refuse('this node holds no lease (it cannot reach the backup or the witness)', 'check the network, then try again');
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

  private readiness(): SwitchoverReadiness {
    const peer = this.pairedPeer();
    const witness = this.witnessStatus();
    const hooks = this.hooks();
    return switchoverReadiness({
      role: this.role,
      peerName: peer?.name ?? null,
      peerState: peer ? (this.runtime.get(peer.id)?.state ?? 'down') : null,
      linkConnected: peer ? Boolean(this.links?.isConnected(peer.id)) : false,
      maintenance: this.maintenance(),
      switching: this.switching,
      acting: this.role === 'primary' && this.mayActNow(),
      witness: witness ? { name: witness.name, state: witness.state } : null,
      objects: this.objects?.status() ?? [],
      hooks: { stopHere: hooks.stop !== null, startHere: hooks.start !== null },
      nowMs: Date.now(),
    });
  }

  /** The backup's check hook against a snapshot of its copies: could the application start here? */
  private async rehearse(): Promise<RehearsalResult> {
    if (this.role !== 'backup') throw new UnderstudyError('usage', `this node is the ${this.role}: a rehearsal runs on the backup`, { hint: 'run switchover --rehearse on the backup' });
    const hooks = this.hooks();
    if (!hooks.check) throw new UnderstudyError('usage', 'this node has no check hook to rehearse with', { hint: "set one with 'understudy hooks set --check CMD' (it gets the snapshot in UNDERSTUDY_SNAPSHOT)" });
    const dir = join(this.home, 'rehearsal', new Date().toISOString().replace(/[:.]/g, '-'));
    try {
      const objects = await this.objects!.snapshotCopies(dir);
      const result = await runHook('check', hooks.check, hooks.timeoutMs, {
        UNDERSTUDY_ROLE: this.role,
        UNDERSTUDY_EPOCH: String(this.epoch),
        UNDERSTUDY_HOME: this.home,
        UNDERSTUDY_REHEARSAL: '1',
        UNDERSTUDY_SNAPSHOT: dir,
        UNDERSTUDY_SNAPSHOT_OBJECTS: JSON.stringify(objects),
      });
      const status = result.timedOut ? `timed out after ${hooks.timeoutMs} ms` : result.exitCode === null ? 'could not run' : `exit ${result.exitCode}`;
      this.record(result.ok ? 'switchover.rehearsed' : 'hook.failed', `switchover rehearsal: the check hook ${result.ok ? 'passed' : 'failed'} against a snapshot of ${objects.length} object(s) (${status}, ${result.ms} ms)`, {
        hook: 'check',
        ok: result.ok,
        exitCode: result.exitCode,
        ms: result.ms,
        output: result.output,
      });
      return { ok: result.ok, node: this.settings.name, objects, exitCode: result.exitCode, timedOut: result.timedOut, ms: result.ms, output: result.output };
    } finally {
      // The snapshot is ours (hard links and copies): the live copies are untouched by its removal.
      await rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * The web console on 127.0.0.1 (UNDERSTUDY_CONSOLE_PORT, default 7421; 0: any free port). A
   * console that cannot listen is reported and the node runs on: protection never depends on it.
   */
  private async startConsole(): Promise<void> {
    const fromEnv = process.env.UNDERSTUDY_CONSOLE_PORT;
    const port = fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : DefaultConsolePort;
    this.consoleToken = loadOrCreateConsoleToken(this.home);
    const server = new ConsoleServer({
      host: '127.0.0.1',
      port,
      staticDir: RendererDir,
      token: this.consoleToken,
      handle: (command, params) => this.command(command, params),
      log: this.log.child({ sub: 'console' }),
    });
    try {
      await server.start();
      this.console = server;
    } catch (error) {
      this.record('console.unavailable', `the web console cannot listen on 127.0.0.1:${port}: ${(error as Error).message}; the node runs without it`, { port, reason: (error as Error).message });
    }
  }

  private refuse(reason: string, hint: string): UnderstudyError {
    this.record('switchover.refused', `switchover refused: ${reason}`, { reason });
    return new UnderstudyError('switchover-refused', `switchover refused: ${reason}`, { hint });
  }

  private async handOver(peer: PeerRecord): Promise<void> {
    const started = performance.now();
    // Paused on purpose: the backup lacks what the pause held back, and only the admin may send it.
    const paused = this.objects!.status().filter((o) => o.paused);
    if (paused.length > 0) {
      throw this.refuse(`${paused.map((o) => o.id).join(', ')} ${paused.length === 1 ? 'is' : 'are'} paused`, `resume ${paused.length === 1 ? 'it' : 'them'} first ('understudy resume ${paused[0]!.id}')`);
    }
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
    // The backup holds the last change: its indexes must say so too (Merkle roots at the drain point).
    const mismatched = await this.objects!.compareAtDrainPoint(3000);
    if (mismatched.length > 0) {
      await this.runHook('start');
      throw this.refuse(`the backup's copy does not match at the drain point: ${mismatched.join('; ')}`, 'audit it, then switch over');
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

  // --- cluster: leases, failover, membership, settings ----------------------------------------

  private config(): ClusterConfig {
    return resolveConfig(this.store.getSetting<StoredConfig>('cluster.config'));
  }

  private maintenance(): boolean {
    return this.store.getSetting<boolean>('cluster.maintenance') ?? false;
  }

  /** Whether this node, as primary, may do something visible now (checked before every such action). */
  private mayActNow(): boolean {
    return this.acting && this.gate.mayAct();
  }

  /** Tells the heartbeat worker what it needs to keep leases and ask for votes. */
  private pushCluster(): void {
    if (this.stopping) return;
    const peers = this.store.listPeers();
    const config = this.config();
    const lagMs = Math.max(0, ...(this.objects?.status() ?? []).map((o) => o.lagMs));
    const lagOk = config.maxPromoteLagMs === null || lagMs <= config.maxPromoteLagMs;
    this.heartbeat?.setCluster({
      role: this.role,
      epoch: this.epoch,
      witnessId: this.witnessPeer()?.id ?? null,
      primaryId: this.role === 'primary' ? null : (peers.find((peer) => peer.role === 'primary')?.id ?? null),
      canPromote: !this.maintenance() && this.failoverPolicy() === 'automatic' && lagOk,
      lease: leaseSettings(config),
    });
  }

  private async onKeeper(report: KeeperReport, mono: number): Promise<void> {
    switch (report.type) {
      case 'fenced': {
        if (this.role !== 'primary' || !this.acting) return;
        this.acting = false;
        this.fenced = true;
        this.applyPeers();
        this.fencing = (async () => {
          const vip = this.moveVip(false);
          const hook = await this.runHook('stop', this.config().stopBudgetMs);
          await vip;
          this.record('role.fenced', `this node stopped acting as primary: ${report.reason}; the stop hook ${hook ? 'ran' : 'failed'}`, {
            reason: report.reason,
            epoch: this.epoch,
            decidedAtMono: mono,
            stoppedAtMono: machineMonoMs(),
          });
        })();
        await this.fencing;
        return;
      }
      case 'lease-acquired': {
        if (this.role !== 'primary' || this.acting) return;
        this.acting = true;
        this.record('role.acting', `this node acts as primary (epoch ${this.epoch}), lease ${report.remainingMs} ms`, { epoch: this.epoch, sinceMono: mono, leaseMs: report.remainingMs });
        this.applyPeers();
        void this.moveVip(true);
        if (this.fenced || this.startHookOwed) {
          this.fenced = false;
          this.startHookOwed = false;
          await this.runHook('start');
        }
        return;
      }
      case 'promote':
        await this.failover(report.epoch, `the primary was unreachable for ${report.waitedMs} ms and the witness voted for this node`, false);
        return;
      case 'vote-refused':
        if (!this.failoverAlerted) {
          this.failoverAlerted = true;
          this.record('failover.waiting', `the primary is unreachable from here, but the witness refused to vote (${report.reason}): no failover`, { reason: report.reason });
        }
        return;
      case 'newer-primary':
        if (this.role === 'primary') await this.stepDownTo(report.epoch, report.peerId, `'${this.peerName(report.peerId)}' is primary in epoch ${report.epoch}`);
        return;
      default:
        assertNever(report, 'keeper report');
    }
  }

  /** Becomes primary after the primary was lost (a witness's vote, or the admin's --force). */
  private async failover(epoch: number, why: string, forced: boolean): Promise<void> {
    const peer = this.pairedPeer();
    if (this.role !== 'backup' || !peer || epoch <= this.epoch || this.switching) return;
    if (!forced && (this.maintenance() || this.failoverPolicy() === 'ask')) return;
    const started = performance.now();
    this.switching = true;
    try {
      await this.changeRole('primary', epoch, peer.id, why);
      await this.waitActing(3 * this.config().leaseMs);
      this.record('failover.done', `failover done in ${Math.round(performance.now() - started)} ms: this node is the primary, epoch ${epoch}${forced ? ' (forced by the admin)' : ''}`, {
        epoch,
        forced,
        ms: Math.round(performance.now() - started),
        acting: this.mayActNow(),
      });
    } finally {
      this.switching = false;
    }
  }

  private async waitActing(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.mayActNow() && performance.now() < deadline && this.role === 'primary') await new Promise((resolve) => setTimeout(resolve, 5));
  }

  /** `understudy failover --force` on the backup: the admin vouches that the primary is really gone. */
  private async forceFailover(force: boolean): Promise<{ ms: number; role: NodeRole; epoch: number }> {
    const started = performance.now();
    const peer = this.pairedPeer();
    if (!force) {
      throw new UnderstudyError('usage', 'failover needs --force', {
        hint: 'with a witness the backup takes over by itself; --force is for when you know the primary is down (power off or unplugged)',
      });
    }
    if (this.role !== 'backup' || !peer) throw new UnderstudyError('usage', `this node is ${this.role === 'primary' ? 'already the primary' : `the ${this.role}`}`, { hint: 'run failover --force on the backup' });
    if (this.runtime.get(peer.id)?.state === 'up') {
      throw new UnderstudyError('failover-refused', `the primary '${peer.name}' is up: a forced failover would give the pair two primaries`, { hint: "use 'understudy switchover' for a planned swap" });
    }
    // Without a witness's ballot: the highest epoch known plus one, recorded with this node's id.
    const epoch = this.epoch + 1;
    await this.failover(epoch, `forced by the admin while '${peer.name}' was down`, true);
    return { ms: Math.round(performance.now() - started), role: this.role, epoch: this.epoch };
  }

  /**
   * Leaves the primary role because a later primary exists. What this node wrote that the
   * new primary never acknowledged is archived before the copies are brought in line.
   */
  private async stepDownTo(epoch: number, peerId: string, why: string): Promise<void> {
    if (this.demoting || this.role !== 'primary' || epoch <= this.epoch) return;
    this.demoting = true;
    try {
      const wasActing = this.acting;
      this.acting = false;
      this.applyPeers();
      if (wasActing) await this.runHook('stop', this.config().stopBudgetMs);
      // Stepped down for want of a lease just before: its application may still be stopping,
      // and what it writes meanwhile belongs in the archive, so the archive waits for it.
      await this.fencing;
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const dir = join(this.home, 'divergence', `${stamp}-epoch-${this.epoch}`);
      const archived = await this.objects!.archiveDivergence(dir);
      if (archived.length > 0) {
        this.record('divergence.archived', `kept what this node wrote as primary in epoch ${this.epoch} that '${this.peerName(peerId)}' may not have, in ${dir} (${archived.map((a) => `${a.id}: ${a.files} files, ${a.deletions} deletions`).join('; ')})`, {
          dir,
          epoch: this.epoch,
          objects: archived,
        });
      }
      await this.changeRole('backup', epoch, peerId, why, { stopHookRan: true, stoppedActingAtMono: wasActing ? machineMonoMs() : null, setAsideUnacknowledged: true });
    } finally {
      this.demoting = false;
    }
  }

  /** On the backup: says once per outage why no failover happens by itself (no witness, or maintenance). */
  private alertIfPrimaryLost(peer: PeerRecord | undefined, state: PeerState): void {
    if (!peer || peer.role !== 'primary' || this.role !== 'backup') return;
    if (state === 'up') {
      this.failoverAlerted = false;
      return;
    }
    if (state !== 'down' || this.failoverAlerted) return;
    if (!this.witnessPeer()) {
      this.failoverAlerted = true;
      this.record('failover.needed', `the primary '${peer.name}' is down and this pair has no witness, so there is no automatic failover (a partition and a crash look the same from here). Once you are sure '${peer.name}' is off, run 'understudy failover --force' on this node`, { peer: peer.id });
    } else if (this.maintenance()) {
      this.failoverAlerted = true;
      this.record('failover.waiting', `the primary '${peer.name}' is down, and maintenance mode is on: no automatic failover`, { peer: peer.id, reason: 'maintenance' });
    } else if (this.failoverPolicy() === 'ask') {
      this.failoverAlerted = true;
      this.record('failover.waiting', `the primary '${peer.name}' is down, and the failover policy is "ask me": once you are sure '${peer.name}' is off, take over with 'understudy failover --force' (or the dashboard)`, { peer: peer.id, reason: 'policy' });
    }
  }

  private vip(): VipSettings | null {
    return this.store.getSetting<VipSettings | null>('cluster.vip') ?? null;
  }

  private setVip(address: string, dev: string): { address: string | null; dev: string | null } {
    const old = this.vip();
    const next = address === 'none' ? null : parseVip(address, dev);
    if (old && this.mayActNow()) void this.moveVip(false, old);
    this.store.setSetting('cluster.vip', next);
    if (next && this.mayActNow()) void this.moveVip(true);
    return { address: next?.address ?? null, dev: next?.dev ?? null };
  }

  /** Takes or gives up the virtual IP with the primary role; never fails the role change, says why when skipped. */
  private async moveVip(take: boolean, vip = this.vip()): Promise<void> {
    if (!vip) return;
    const outcome = take ? await takeVip(vip) : await releaseVip(vip);
    if (outcome.ok) this.record(take ? 'vip.added' : 'vip.removed', `virtual IP ${vip.address} on ${vip.dev}: ${outcome.detail}`, { address: vip.address, dev: vip.dev });
    else this.record('vip.skipped', `virtual IP ${vip.address} not ${take ? 'taken' : 'given up'}: ${outcome.reason}`, { address: vip.address, dev: vip.dev, reason: outcome.reason });
  }

  private peerName(peerId: string): string {
    return this.store.listPeers().find((p) => p.id === peerId)?.name ?? shortNodeId(peerId);
  }

  private setMaintenance(on: boolean, fromPeer = false): { maintenance: boolean } {
    if (this.role === 'witness') throw new UnderstudyError('usage', 'maintenance mode is set on the primary or the backup', { hint: 'run it on either node of the pair' });
    this.store.setSetting('cluster.maintenance', on);
    // It holds for the pair: the other node is told (and told again at every reconnection).
    const peer = this.pairedPeer();
    if (!fromPeer && peer) this.links?.send(peer.id, { t: 'role.maintenance', epoch: this.epoch, on });
    this.pushCluster();
    this.record('cluster.maintenance', on ? 'maintenance mode on: no automatic failover and no check-triggered switchover' : 'maintenance mode off', { on });
    return { maintenance: on };
  }

  private failoverPolicy(): FailoverPolicy {
    return this.store.getSetting<FailoverPolicy>('cluster.failoverPolicy') ?? 'automatic';
  }

  /** "ask": the backup never takes over by itself (the admin does, with --force); switchovers still run. */
  private setFailoverPolicy(policy: FailoverPolicy, fromPeer = false): void {
    if (this.role === 'witness') throw new UnderstudyError('usage', 'the failover policy is set on the primary or the backup', { hint: 'set it on either node of the pair' });
    const changed = policy !== this.failoverPolicy();
    this.store.setSetting('cluster.failoverPolicy', policy);
    // One policy for the pair: the other node is told (and told again at every reconnection).
    const peer = this.pairedPeer();
    if (!fromPeer && peer) this.links?.send(peer.id, { t: 'role.policy', epoch: this.epoch, policy });
    this.pushCluster();
    if (changed) {
      this.record('cluster.policy', policy === 'ask' ? 'failover policy: ask me (the backup waits for the admin when the primary is lost)' : 'failover policy: automatic (the backup takes over when the witness agrees)', { policy });
    }
  }

  private clusterSettings(): ClusterSettings {
    const maintenance = this.maintenance();
    return { config: this.config(), hooks: this.hooks(), maintenance, failoverPolicy: this.failoverPolicy() };
  }

  private listenSettings(): { host: string; port: number } {
    return { host: this.settings.listenHost, port: this.settings.listenPort };
  }

  private setConfig(key: string, value: string): ClusterConfigView {
    const stored = setConfigValue(this.store.getSetting<StoredConfig>('cluster.config'), key, value);
    this.store.setSetting('cluster.config', stored);
    this.pushCluster();
    const config = this.config();
    const later = key === 'heartbeatMs' || key === 'profile' ? ' (the heartbeat interval takes effect at the next start)' : '';
    this.record('cluster.config-changed', `setting ${key} = ${value}${later}`, { key, value, config });
    return config;
  }

  private witnessStatus(): StatusReport['witness'] {
    const witness = this.witnessPeer();
    if (!witness) return null;
    return { id: witness.id, name: witness.name, state: this.runtime.get(witness.id)?.state ?? 'down' };
  }

  /** The primary pinned a witness: it becomes part of the cluster and is announced to the backup. */
  private addWitness(peer: PeerRecord): void {
    this.store.pinMember(peer);
    this.applyPeers();
    this.record('cluster.member-added', `the witness '${peer.name}' (${formatAddress(peer.host, peer.port)}) joined; automatic failover is on`, { peer: peer.id, peerName: peer.name, role: 'witness' });
    this.announceMembers();
  }

  /** The primary tells every connected member who is in the cluster (the backup learns of the witness, the witness of the backup). */
  private announceMembers(): void {
    if (this.role !== 'primary') return;
    const peers = this.store.listPeers();
    const members = [
      { id: this.identity.nodeId, name: this.settings.name, role: this.role, certPem: this.identity.certPem, host: this.settings.listenHost, port: this.settings.listenPort },
      ...peers.map((peer) => ({ id: peer.id, name: peer.name, role: peer.role, certPem: peer.certPem, host: peer.host, port: peer.port })),
    ];
    for (const peer of peers) this.links?.send(peer.id, { t: 'cluster.members', epoch: this.epoch, members });
  }

  private onMembers(fromId: string, message: Extract<LinkMessage, { t: 'cluster.members' }>): void {
    if (message.epoch < this.epoch) return;
    const known = new Map(this.store.listPeers().map((peer) => [peer.id, peer]));
    if (known.get(fromId)?.role !== 'primary' && !message.members.some((m) => m.id === fromId && m.role === 'primary')) return;
    let changed = false;
    for (const member of message.members) {
      if (member.id === this.identity.nodeId) continue;
      const keyHash = publicKeyHash(member.certPem);
      // Only a member whose certificate is its id: the primary vouches for it, the key proves it.
      if (nodeIdFromKeyHash(keyHash) !== member.id) continue;
      const existing = known.get(member.id);
      if (existing && existing.role === member.role && existing.host === member.host && existing.port === member.port) continue;
      // The wildcard a node listens on is no address to dial: use the one we reach the primary at.
      const host = member.host === '0.0.0.0' || member.host === '::' ? (known.get(fromId)?.host ?? member.host) : member.host;
      this.store.pinMember({ id: member.id, name: member.name, role: member.role, keyHash, certPem: member.certPem, host, port: member.port, pairedAt: existing?.pairedAt ?? new Date().toISOString() });
      if (!existing) this.record('cluster.member-added', `'${member.name}' joined the cluster as ${member.role} (told by '${known.get(fromId)?.name ?? fromId}')`, { peer: member.id, peerName: member.name, role: member.role });
      changed = true;
    }
    if (this.role === 'witness' && message.epoch > this.epoch) {
      this.epoch = message.epoch;
      this.store.setSetting('node.epoch', message.epoch);
      changed = true;
    }
    if (changed) this.applyPeers();
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
  private async runHook(name: HookName, timeoutMs?: number): Promise<boolean> {
    const hooks = this.hooks();
    const command = hooks[name];
    if (!command) return true;
    // The application starts and is probed only on a primary that may act right now.
    if (name !== 'stop' && this.role === 'primary' && !this.mayActNow()) {
      this.log.warn({ hook: name }, 'hook not run: this node may not act as primary now');
      return false;
    }
    const limitMs = Math.min(hooks.timeoutMs, timeoutMs ?? hooks.timeoutMs);
    const result = await runHook(name, command, limitMs, { UNDERSTUDY_ROLE: this.role, UNDERSTUDY_EPOCH: String(this.epoch), UNDERSTUDY_HOME: this.home });
    const status = result.timedOut ? `timed out after ${limitMs} ms` : result.exitCode === null ? 'could not run' : `exit ${result.exitCode}`;
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
    if (this.role === 'primary' && !this.switching && this.mayActNow() && !this.maintenance()) {
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
      case 'role.maintenance':
        if (message.on !== this.maintenance()) this.setMaintenance(message.on, true);
        return;
      case 'role.policy':
        if (message.policy !== this.failoverPolicy()) this.setFailoverPolicy(message.policy, true);
        return;
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
  private async changeRole(
    role: 'primary' | 'backup',
    epoch: number,
    peerId: string,
    why: string,
    options: { stopHookRan?: boolean; stoppedActingAtMono?: number | null; setAsideUnacknowledged?: boolean } = {},
  ): Promise<void> {
    const previous = this.role;
    let stoppedActingAtMono = options.stoppedActingAtMono ?? null;
    if (previous === 'primary' && role === 'backup') {
      const wasActing = this.acting;
      this.acting = false;
      await this.moveVip(false);
      // Stepping down without a switchover (a later primary appeared): the application stops first.
      if (!options.stopHookRan) await this.runHook('stop', this.config().stopBudgetMs);
      if (wasActing && stoppedActingAtMono === null) stoppedActingAtMono = machineMonoMs();
    }
    this.store.setRoles({ role, epoch }, { id: peerId, role: role === 'primary' ? 'backup' : 'primary' });
    this.role = role;
    this.epoch = epoch;
    this.roleSince = new Date();
    if (role === 'primary') {
      // With a witness, a new primary acts only once it holds a lease (the worker says when).
      this.acting = !this.witnessPeer();
      this.startHookOwed = true;
      this.fenced = false;
      this.failoverAlerted = false;
    }
    this.applyPeers();
    // The witness must know who the primary is now: it votes and grants by that.
    if (role === 'primary') this.announceMembers();
    const started = performance.now();
    await this.objects?.reverse(role, { setAsideUnacknowledged: options.setAsideUnacknowledged ?? false });
    const type: EventType = role === 'primary' ? 'role.promoted' : 'role.demoted';
    this.record(type, `this node is now the ${role} (was ${previous}), epoch ${epoch}: ${why}`, {
      role,
      previous,
      epoch,
      reverseMs: Math.round(performance.now() - started),
      ...(stoppedActingAtMono !== null ? { stoppedActingAtMono } : {}),
    });
    if (role === 'primary') {
      // A node that became primary is not switched away again by its own checks at once.
      this.checkQuietUntil = performance.now() + CheckCooldownMs;
      if (!this.witnessPeer()) {
        this.record('role.acting', `this node acts as primary (epoch ${epoch}, no witness: no lease)`, { epoch, sinceMono: machineMonoMs() });
        void this.moveVip(true);
      }
      if (this.mayActNow() && this.startHookOwed) {
        this.startHookOwed = false;
        await this.runHook('start');
      }
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
      linkBytes: this.links?.bytes(peer.id) ?? { sent: 0, received: 0 },
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
    this.console?.broadcast(event);
    this.emit('event', event);
  }

  /** Stops everything the node runs, records it, and frees the home. Idempotent. */
  async stop(options: { recordEvent?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.checkTimer) clearTimeout(this.checkTimer);
    if (this.clusterTimer) clearInterval(this.clusterTimer);
    this.license.stop();
    // A clean stop gives the virtual IP up (a crash cannot: the next primary's ARP takes it over).
    if (this.role === 'primary' && this.acting) {
      this.acting = false;
      await this.moveVip(false);
    }
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
    await this.console?.stop();
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
