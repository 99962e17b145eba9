/**
 * The control contract: every command a client (CLI, desktop app, web console) can send to
 * a running node, and every event the node pushes back. Types only, no runtime imports, so
 * the engine, the CLI, the preload bridge and the renderer all type against this one file.
 */

export type NodeRole = 'standalone' | 'primary' | 'backup' | 'witness';
export type PeerState = 'up' | 'suspect' | 'down';

/** Labels for people, next to the stable values scripts use. */
export const PeerStateLabels: Record<PeerState, string> = {
  up: 'up',
  suspect: 'suspect (missed heartbeats)',
  down: 'down',
};

export interface NodeInfo {
  id: string;
  name: string;
  role: NodeRole;
  epoch: number;
  /** The address peers reach this node on, as HOST:PORT. */
  listen: string;
  /** The heartbeat port (the listen port + 1). */
  heartbeatPort: number;
  version: string;
  pid: number;
  startedAt: string;
  /** When this node's role last changed (pairing, switchover), or when it started. */
  roleSince: string;
  /**
   * On the primary of a pair with a witness: how long it may still act as primary before it
   * must renew its lease (ms). Null when not primary, or without a witness (no lease then).
   */
  leaseMs: number | null;
  /** Whether this node acts as primary right now (false on a primary that stepped down for want of a lease). */
  acting: boolean;
  /** Maintenance mode: no automatic failover and no check-triggered switchover. */
  maintenance: boolean;
  /** The pair's failover policy (see FailoverPolicy). */
  failoverPolicy: FailoverPolicy;
  /** What runs this engine: the system service, the desktop app's own process, or `understudy serve` started by hand. */
  host: EngineHost;
}

export type EngineHost = 'service' | 'app' | 'terminal';

/** automatic: the backup takes over by itself when the witness agrees; ask: it waits for the admin (failover --force). */
export type FailoverPolicy = 'automatic' | 'ask';

export interface WitnessStatus {
  id: string;
  name: string;
  /** Heartbeats to the witness: up, suspect or down. */
  state: PeerState;
}

export interface RttStats {
  /** The last measured round trip in microseconds. */
  lastUs: number;
  p50Us: number;
  p99Us: number;
  /** How many recent beats these figures cover. */
  samples: number;
}

export interface PeerStatus {
  id: string;
  name: string;
  role: NodeRole;
  address: string;
  state: PeerState;
  /** Heartbeat round trip, whole milliseconds rounded up; null while the peer is not up. */
  rttMs: number | null;
  /** Finer round-trip figures over recent beats; null until a beat has been answered. */
  rtt: RttStats | null;
  /** When the peer last answered a heartbeat; null if never since this node started. */
  lastSeenAt: string | null;
  /** When the peer entered its current state. */
  stateSince: string;
  /** Whether the data link (separate from heartbeats) is connected. */
  link: 'connected' | 'disconnected';
  /** Bytes sent to and received from the peer on the data link since this node started (throughput, audit costs). */
  linkBytes: { sent: number; received: number };
  pairedAt: string;
}

export type ObjectState = 'initial-sync' | 'in-sync' | 'catching-up' | 'paused' | 'error';

export interface InitialSyncProgress {
  files: number;
  filesDone: number;
  bytes: number;
  bytesDone: number;
  /** Estimated time left, or null before there is a rate to go by. */
  etaMs: number | null;
}

export interface ObjectStatus {
  id: string;
  kind: 'folder' | 'sqlite';
  /** Its path on the node that is primary now. */
  source: string;
  /** Its path on the backup now. */
  target: string;
  state: ObjectState;
  /** Age of the oldest change not yet applied on the backup; 0 in sync. On the backup: the last value the primary reported. */
  lagMs: number;
  /** Changes not yet applied on the backup. */
  pending: number;
  /** What is wrong, when state is error. */
  error: string | null;
  /** Initial sync progress on the primary; null once done (and on the backup). */
  progress: InitialSyncProgress | null;
  /** Paths left out and reported (live SQLite databases, names that are not UTF-8, unreadable files). */
  skipped: number;
  /** Databases only: the last transaction applied on the backup (0: none yet). */
  txid?: number;
  /** Databases only: how changes are captured: tailing the WAL, or page-hash snapshots of a rollback-journal database. */
  capture?: 'wal' | 'snapshot';
  /** The latest audit of the backup's copy (on both nodes); null before the first. */
  lastAudit?: LastAudit | null;
  /**
   * Where the lag sits, stage by stage: lagMs is the largest stage lag and pending the sum of
   * their changes (on the backup: as the primary last reported it, every second).
   */
  stages?: ObjectStages;
  /** What the backup acknowledged over the last 10 s (on the backup: as the primary last reported it). */
  throughput?: Throughput;
  /**
   * Paused by the admin (`understudy pause`, kept across restarts): changes are still captured,
   * but not sent until resumed; state is then 'paused' too (which otherwise means the backup is away).
   */
  paused?: boolean;
}

/** One stage of the replication pipeline: how old its oldest change is, and how many changes wait in it. */
export interface StageLag {
  /** Age of the oldest change in the stage (0 when it is empty). */
  lagMs: number;
  changes: number;
}

/**
 * The stages of replication, as the primary measures them. The backup acknowledges a change
 * only once it has applied it (durably), so "received" and "applied" are one event to the
 * primary; the stages are cut where the primary can see:
 * - capture: changed on the primary but not yet journaled. Folders: paths the watcher reported
 *   that are settling or being scanned. Databases: transactions committed in the WAL (the
 *   application's own journal) not yet read — while paused or while the link is backed up —
 *   aged from when they were first seen.
 * - send: journaled, not yet sent. Folders: journal entries past what was sent (waiting for the
 *   send window, the link, or a resume). Databases: a resync being compared and sent, or held
 *   by a pause (one change); a transaction read from the WAL is sent at once.
 * - apply: sent, not yet acknowledged as applied: in flight, or being applied on the backup.
 */
export interface ObjectStages {
  capture: StageLag;
  send: StageLag;
  apply: StageLag;
}

/**
 * What the backup acknowledged over the last 10 s, divided by 10. Bytes: the size of the
 * files changed, or of the database pages sent (what crossed the wire is in linkBytes).
 */
export interface Throughput {
  bytesPerSec: number;
  changesPerSec: number;
}

/** One point of an object's lag history (one every 10 s, kept for an hour). */
export interface LagSample {
  at: string;
  lagMs: number;
  captureMs: number;
  sendMs: number;
  applyMs: number;
  pending: number;
  bytesPerSec: number;
}

/**
 * One audit of one object's copy on the backup. Folders: the index's Merkle root against the
 * primary's, the copy's files against the index (type, size, mode, mtime) and, in a scrub,
 * every file's content re-hashed. Databases: every page's hash against the primary's.
 */
export interface LastAudit {
  at: string;
  /** clean: nothing differed; repaired: differences found and repaired; failed: could not complete or repair. */
  result: 'clean' | 'repaired' | 'failed';
  /** Paths (folders) or pages (databases) that differed. */
  differences: number;
  repaired: number;
  /** What was compared: 'index+metadata', 'index+metadata+content' (a scrub), 'pages'. */
  scope: string;
  ms: number;
  /** Why it failed, or what differed (a few paths), for people. */
  detail: string | null;
}

/** One line of a switchover's readiness: a blocker stops a switchover; a warning deserves a look. */
export interface ReadinessCheck {
  name: string;
  level: 'ok' | 'warning' | 'blocker';
  detail: string;
}

export interface SwitchoverReadiness {
  /** No blocker. */
  ready: boolean;
  checks: ReadinessCheck[];
}

/** A switchover rehearsal: the backup's check hook run against a snapshot of its copies. */
export interface RehearsalResult {
  /** The check hook passed against the snapshot. */
  ok: boolean;
  /** The node it ran on (the backup). */
  node: string;
  /** The snapshot's objects (removed once the hook is done). */
  objects: { id: string; kind: 'folder' | 'sqlite'; path: string }[];
  exitCode: number | null;
  timedOut: boolean;
  ms: number;
  /** The last 2 KiB of the hook's output. */
  output: string;
}

export interface AuditOutcome extends LastAudit {
  id: string;
  kind: 'folder' | 'sqlite';
}

/** The application's hooks on one node (see docs/cli.md, `hooks set`). */
export interface HookConfig {
  start: string | null;
  stop: string | null;
  check: string | null;
  /** Consecutive failed checks that trigger a switchover. */
  checkFailures: number;
  /** Time limit of one run of any hook (ms). */
  timeoutMs: number;
}

export interface StatusReport {
  node: NodeInfo;
  peers: PeerStatus[];
  objects: ObjectStatus[];
  /** The pair's witness, or null when the pair has none (then no automatic failover). */
  witness: WitnessStatus | null;
  license: LicenseReport;
}

/**
 * trial: no key yet, within the 30-day trial; valid: a key that covers this machine;
 * expired: the key's term (or the trial) is over; invalid: the stored key no longer verifies;
 * too-small: the key's tier covers fewer cores than this machine has. Whatever the state,
 * replication, heartbeats, failover and switchover go on: only new configuration waits.
 */
export type LicenseState = 'trial' | 'valid' | 'expired' | 'invalid' | 'too-small';

export interface LicenseReport {
  state: LicenseState;
  /** What stands behind the state: the trial, a key with a term, a perpetual key. */
  kind: 'trial' | 'term' | 'perpetual';
  /** The tier of the installed key (P05 … P50); null in the trial. */
  tier: string | null;
  customer: string | null;
  licenseId: string | null;
  issuedAt: string | null;
  /** End of the key's term, or of the trial; null for a perpetual key. */
  expiresAt: string | null;
  /** Whole days until expiresAt (0 once past); null for a perpetual key. */
  daysLeft: number | null;
  /** Perpetual keys: the end of maintenance (updates); null otherwise. */
  maintenanceEndsAt: string | null;
  /** Nodes the key covers: 2 is one pair (a witness is never counted). */
  nodes: number;
  /** This machine's logical cores, as the tiers count them. */
  cores: number;
  /** The smallest tier that covers this machine. */
  tierNeeded: string;
  /** Whether new configuration (protecting objects, pairing a new backup) is allowed. */
  mayConfigure: boolean;
  /** False on a witness: it needs no license of its own. */
  counted: boolean;
  /** One sentence on where things stand, for people. */
  summary: string;
  /** What needs attention, one sentence each (empty when nothing does). */
  warnings: string[];
}

export interface TierInfo {
  tier: string;
  /** The largest machine the tier covers, in logical cores; null: no limit. */
  maxCores: number | null;
  priceUsd: number;
}

/** The licensing page: the report plus the tier table (what an upgrade would change). */
export interface LicenseView {
  license: LicenseReport;
  tiers: TierInfo[];
}

export interface LicenseInstallResult {
  license: LicenseReport;
  /** False when this very key was installed already. */
  changed: boolean;
}

export interface EventRecord {
  id: number;
  at: string;
  type: EventType;
  message: string;
  [field: string]: unknown;
}

/** Stable dotted event names; docs/cli.md lists them. */
export type EventType =
  | 'node.initialized'
  | 'node.started'
  | 'node.stopped'
  | 'pair.code-issued'
  | 'pair.completed'
  | 'pair.refused'
  | 'peer.up'
  | 'peer.suspect'
  | 'peer.down'
  | 'link.refused'
  | 'node.error'
  | 'folder.protected'
  | 'folder.unprotected'
  | 'folder.replicating'
  | 'folder.in-sync'
  | 'folder.error'
  | 'folder.recovered'
  | 'folder.skipped'
  | 'folder.unsettled'
  | 'folder.refused-path'
  | 'switchover.started'
  | 'switchover.done'
  | 'switchover.refused'
  | 'switchover.rehearsed'
  | 'hook.ran'
  | 'hook.failed'
  | 'role.promoted'
  | 'role.demoted'
  | 'role.fenced'
  | 'role.acting'
  | 'failover.needed'
  | 'failover.waiting'
  | 'failover.done'
  | 'divergence.archived'
  | 'cluster.member-added'
  | 'cluster.config-changed'
  | 'vip.added'
  | 'vip.removed'
  | 'vip.skipped'
  | 'cluster.maintenance'
  | 'cluster.policy'
  | 'sqlite.protected'
  | 'sqlite.unprotected'
  | 'sqlite.replicating'
  | 'sqlite.in-sync'
  | 'sqlite.resync'
  | 'sqlite.diverged'
  | 'sqlite.error'
  | 'sqlite.recovered'
  | 'console.unavailable'
  | 'license.installed'
  | 'license.warning'
  | 'audit.done'
  | 'audit.repaired'
  | 'audit.failed'
  | 'object.paused'
  | 'object.resumed'
  | 'object.resync';

export interface PairCodeResult {
  code: string;
  expiresAt: string;
}

export interface PairResult {
  peer: PeerStatus;
}

/** Command name → its parameters and result. Names are domain:verb. */
export interface Commands {
  'node:status': { params: Record<string, never>; result: StatusReport };
  'pair:code': { params: Record<string, never>; result: PairCodeResult };
  'pair:join': { params: { peer: string; code: string; as?: 'backup' | 'witness' }; result: PairResult };
  'events:list': { params: { afterId?: number; limit?: number }; result: EventRecord[] };
  /** Starts pushing events on this connection; returns the id of the newest event so far. */
  'events:subscribe': { params: Record<string, never>; result: { lastId: number } };
  /** Protects a folder or a SQLite database (on the primary); waits until it is recorded and its capture started. */
  'object:protect': { params: { kind: 'folder' | 'sqlite'; source: string; target?: string; excludes?: string[] }; result: ObjectStatus };
  /** Stops protecting an object; the backup's copy stays in place. */
  'object:unprotect': { params: { id: string }; result: { id: string } };
  /**
   * Development only (the node must run with UNDERSTUDY_DEV=1): keeps the node's main thread
   * busy for `ms`, as a long synchronous SQLite call or hashing would, so tests can show
   * that heartbeats do not depend on it.
   */
  'dev:block-main': { params: { ms: number }; result: { blockedMs: number } };
  /**
   * A planned role swap, run on either node; resolves when this node's part is done (on the
   * primary: stepped down and handed over; on the backup: promoted). Refused with the reason
   * when the peer is not reachable or not in sync.
   */
  'cluster:switchover': { params: Record<string, never>; result: { ms: number; role: NodeRole; epoch: number } };
  /**
   * On the backup: takes a snapshot of its copies and runs its check hook against it
   * (UNDERSTUDY_REHEARSAL=1, UNDERSTUDY_SNAPSHOT=DIR, UNDERSTUDY_SNAPSHOT_OBJECTS=JSON), touching
   * neither production nor the live copies. Refused when there is no check hook.
   */
  'cluster:rehearse': { params: Record<string, never>; result: RehearsalResult };
  /** What would block a switchover now (lag, last audits, peer and witness, maintenance, hooks); changes nothing. */
  'cluster:readiness': { params: Record<string, never>; result: SwitchoverReadiness };
  /** Sets this node's application hooks (an empty command clears one); returns them all. */
  'cluster:hooks-set': { params: Partial<HookConfig>; result: HookConfig };
  /**
   * On the backup, when the primary is down: become primary without the witness's vote (the
   * admin vouches that the old primary is really gone). Refused while the primary is up.
   */
  'cluster:failover': { params: { force: boolean }; result: { ms: number; role: NodeRole; epoch: number } };
  /** The virtual IP that moves with the primary role (address 'none' removes it); set it on both nodes. */
  'cluster:vip-set': { params: { address: string; dev: string }; result: { address: string | null; dev: string | null } };
  /** Maintenance mode on or off (no automatic failover, no check-triggered switchover). */
  'cluster:maintenance': { params: { on: boolean }; result: { maintenance: boolean } };
  /** One timing setting (profile, heartbeatMs, leaseMs, stopBudgetMs, maxPromoteLagMs); returns them all. */
  'cluster:config-set': { params: { key: string; value: string }; result: ClusterConfigView };
  /**
   * Audits the backup's copy of one object (id) or of all, from either node; waits until done.
   * scrub: also re-read and re-hash every file (slower; continuous audits scrub a little at a time).
   */
  'object:audit': { params: { id?: string; scrub?: boolean }; result: { objects: AuditOutcome[] } };
  /** The web console's address with its login token in the fragment (`understudy console-url`). */
  'console:url': { params: Record<string, never>; result: { url: string; port: number } };
  /** The license as this node sees it, with the tier table. */
  'license:show': { params: Record<string, never>; result: LicenseView };
  /** Installs a key on this node; it passes to the peer over the link. Refused with the reason when the key is bad or expired. */
  'license:install': { params: { key: string }; result: LicenseInstallResult };
  /**
   * On the primary: stops sending an object's changes to the backup (they are still captured);
   * kept across restarts; idempotent. Refused on the backup (its copy follows the primary).
   */
  'object:pause': { params: { id: string }; result: ObjectStatus };
  /** On the primary: sends what a pause held back, and goes on replicating; idempotent. */
  'object:resume': { params: { id: string }; result: ObjectStatus };
  /**
   * On the primary: compares the whole object with the backup's copy again and sends whatever
   * differs (versions kept of what is overwritten). Returns once started (state catching-up);
   * the 'object.resync' event says what it found. Refused while paused or already resyncing.
   */
  'object:resync': { params: { id: string }; result: ObjectStatus };
  /** An object's lag over the last hour, oldest first (either node; in memory, so since the node started). */
  'object:history': { params: { id: string }; result: { id: string; intervalMs: number; samples: LagSample[] } };
  /** Lists a folder of this machine's disks (default: the user's home) for choosing what to protect. */
  'fs:browse': { params: { path?: string }; result: BrowseListing };
  /** A folder's total size and file count (stops at a limit on very large trees). */
  'fs:measure': { params: { path: string }; result: MeasureResult };
  'setup:get': { params: Record<string, never>; result: SetupState };
  /** Records the wizard's progress; returns it. */
  'setup:save': { params: { step?: number; role?: SetupRole; done?: boolean }; result: SetupState };
  'service:status': { params: Record<string, never>; result: ServiceReport };
  /** Writes the system service for this node's home and enables it at boot. */
  'service:install': { params: Record<string, never>; result: ServiceReport };
  'cluster:settings': { params: Record<string, never>; result: ClusterSettings };
  /** The pair's failover policy (set on either node; the other follows). Switchovers run under either. */
  'cluster:failover-policy': { params: { policy: FailoverPolicy }; result: ClusterSettings };
}

/** One entry of the engine's path browser (the wizard's "what to protect"). */
export interface BrowseEntry {
  name: string;
  path: string;
  /** database: a file that starts with SQLite's header. */
  kind: 'folder' | 'database' | 'file';
  /** Files and databases: their size; folders: null (measured on request, fs:measure). */
  bytes: number | null;
  /** The id of the protected object this path is (or lies inside), if any. */
  protectedBy: string | null;
}

export interface BrowseListing {
  path: string;
  /** The folder above, or null at a root. */
  parent: string | null;
  /** Where browsing may start: the filesystem roots and this user's home. */
  places: { label: string; path: string }[];
  entries: BrowseEntry[];
  /** More entries than a listing shows (the first ones by name are listed). */
  truncated: boolean;
}

export interface MeasureResult {
  path: string;
  bytes: number;
  files: number;
  /** False when the walk stopped at its limit (then bytes and files are lower bounds). */
  complete: boolean;
}

export type SetupRole = 'production' | 'backup' | 'witness';

/** The setup wizard's progress, kept by the node so any window (desktop or browser) resumes it. */
export interface SetupState {
  /** 1..7, or 0 before it started. */
  step: number;
  role: SetupRole | null;
  /** Finished (or skipped by someone who set the node up from the CLI). */
  done: boolean;
  /** Addresses another machine can reach this node on (HOST:PORT), best first. */
  addresses: string[];
}

/** Running the engine as a system service, so protection starts at boot with nobody logged in. */
export interface ServiceReport {
  platform: string;
  /** systemd (Linux), launchd (macOS), or null where the wizard cannot install one. */
  manager: 'systemd' | 'launchd' | null;
  /** The unit or daemon file, when written. */
  unitPath: string | null;
  installed: boolean;
  /** Enabled to start at boot. */
  enabled: boolean;
  /** What was done or what to do, for people. */
  detail: string;
}

/** Everything the settings page shows and changes. */
export interface ClusterSettings {
  config: ClusterConfigView;
  hooks: HookConfig;
  maintenance: boolean;
  failoverPolicy: FailoverPolicy;
}

export interface ClusterConfigView {
  profile: 'lan' | 'wan';
  heartbeatMs: number;
  leaseMs: number;
  stopBudgetMs: number;
  maxPromoteLagMs: number | null;
}

export type CommandName = keyof Commands;
export type CommandParams<C extends CommandName> = Commands[C]['params'];
export type CommandResult<C extends CommandName> = Commands[C]['result'];

export interface ControlErrorBody {
  code: string;
  message: string;
  hint?: string;
}

/** The wire form on the control socket: one JSON object per line. */
export type ControlRequest = { id: number; command: CommandName; params: unknown };
export type ControlReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: ControlErrorBody }
  | { event: EventRecord };

/** What every transport (socket client, preload bridge, WebSocket) offers the UI. */
export interface ControlApi {
  call<C extends CommandName>(command: C, params: CommandParams<C>): Promise<CommandResult<C>>;
  onEvent(listener: (event: EventRecord) => void): () => void;
}
