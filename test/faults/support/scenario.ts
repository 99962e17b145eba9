/**
 * The fault-injection harness, in the spirit of Jepsen: real `understudy` processes (a
 * primary, a backup and a witness, each in its own network namespace when we are root, on
 * loopback otherwise), a workload that keeps writing on whichever node acts as primary
 * (workload.ts), scripted faults (kill -9, SIGSTOP/SIGCONT, partitions, one-way links,
 * flapping links), and invariants checked afterwards from the nodes' own event logs and data:
 *
 *  1. Never two primaries: each node's acting intervals, built from its events (role.acting
 *     sinceMono → role.fenced stoppedAtMono / role.demoted stoppedActingAtMono, or the moment
 *     the test killed or froze it), never overlap. Computed leases are not used.
 *  2. No acknowledged change lost: every write seen on a node's copy other than the one it was
 *     written to (the observer polls the copies during the run) is in the final data; a
 *     failover scenario also checks it on the new primary right after it took over.
 *  3. No divergent change lost, none leaked: every write that is not in the final data is in
 *     the divergence archive of the node it was written on (DIR/divergence/.../OBJECT/files/...
 *     and the database copy); and no write made on a node while another one acted as primary
 *     ever reaches the final data (fencing: nothing is accepted from a deposed primary).
 *  4. Convergence: afterwards the two copies are byte-identical (files) and hold the same rows,
 *     every object is in sync, and all three nodes agree on one primary.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { EventRecord, StatusReport } from '../../../src-main/contract/control.js';
import { startTrio, tempDir, type TestNode } from '../../support/harness.js';
import { createLab, type Lab } from './netns.js';
import {
  DataNodes,
  databaseRows,
  listFiles,
  monoMs,
  parseHeader,
  statusWithin,
  treeLineage,
  Workload,
  type DataNode,
  type WriteRecord,
} from './workload.js';

export { monoMs, type DataNode } from './workload.js';

export type NodeName = DataNode | 'witness';
export const NodeNames: readonly NodeName[] = ['alpha', 'beta', 'witness'];

export interface Mark {
  atMono: number;
  atWall: number;
  what: string;
  node?: NodeName;
  kind: 'kill' | 'stop' | 'cont' | 'start' | 'net' | 'note';
}

export interface Interval {
  node: DataNode;
  start: number;
  end: number;
  startedBy: string;
  endedBy: string;
}

export interface ScenarioExpectation {
  /** The node that must be primary at the end ('either': whichever). */
  finalPrimary: DataNode | 'either';
  /** Whether the primary role may (or must) move: 'never' checks that nobody was promoted. */
  roleChange: 'never' | 'failover' | 'maybe';
}

export interface Scenario {
  /** Short id, used to select scenarios (UNDERSTUDY_FAULTS=id,id). */
  id: string;
  title: string;
  /** Part of the selection `npm test` runs. */
  ci: boolean;
  /** Needs network namespaces (root); without, the scenario is skipped. */
  needsLab: boolean;
  expect: ScenarioExpectation;
  run(cluster: Cluster): Promise<void>;
}

export interface ScenarioResult {
  ms: number;
  violations: string[];
  summary: string[];
}

/** How long the copies may take to converge once every fault is healed. */
const ConvergeMs = Number(process.env.UNDERSTUDY_FAULTS_CONVERGE_MS) || 60_000;

export class Cluster {
  readonly marks: Mark[] = [];
  /** Findings of the scenario's own checks, reported with the invariants'. */
  readonly violations: string[] = [];
  readonly notes: string[] = [];
  readonly workload: Workload;
  readonly objects: { folder: string; db: string };
  private readonly commands: Record<NodeName, 'serve' | 'witness'> = { alpha: 'serve', beta: 'serve', witness: 'witness' };

  private constructor(
    readonly lab: Lab | null,
    readonly nodes: Record<NodeName, TestNode>,
    readonly data: Record<DataNode, { folder: string; db: string }>,
    private readonly dataRoot: string,
    objects: { folder: string; db: string },
    workload: Workload,
  ) {
    this.objects = objects;
    this.workload = workload;
  }

  /**
   * A trio (alpha primary, beta backup, witness), paired with default settings, hooks that do
   * nothing (so hook.ran events show when they run), a protected folder and a protected WAL
   * database on alpha, in sync, and the workload running.
   */
  static async start(options: { lab: boolean }): Promise<Cluster> {
    const lab = options.lab ? await createLab([...NodeNames]) : null;
    let nodes: TestNode[] = [];
    try {
      const place = (name: NodeName) => (lab ? { host: lab.address(name), prefix: lab.prefix(name) } : {});
      const [alpha, beta, witness] = await startTrio({}, { primary: place('alpha'), backup: place('beta'), witness: place('witness') });
      nodes = [alpha, beta, witness];
      for (const node of [alpha, beta]) {
        const set = await node.cli('hooks', 'set', '--start', 'true', '--stop', 'true');
        if (set.code !== 0) throw new Error(`hooks set on ${node.name}: ${set.stderr}`);
      }
      const dataRoot = tempDir('faults-data');
      const data = {
        alpha: { folder: join(dataRoot, 'alpha', 'files'), db: join(dataRoot, 'alpha', 'app.db') },
        beta: { folder: join(dataRoot, 'beta', 'files'), db: join(dataRoot, 'beta', 'app.db') },
      };
      mkdirSync(data.alpha.folder, { recursive: true });
      mkdirSync(join(dataRoot, 'beta'), { recursive: true });
      const workload = new Workload({ data, homes: { alpha: alpha.home, beta: beta.home } });
      workload.seed('alpha');
      const folder = await alpha.cli('protect', 'folder', data.alpha.folder, '--to', data.beta.folder, '--json');
      if (folder.code !== 0) throw new Error(`protect folder: ${folder.stderr}`);
      const db = await alpha.cli('protect', 'sqlite', data.alpha.db, '--to', data.beta.db, '--json');
      if (db.code !== 0) throw new Error(`protect sqlite: ${db.stderr}`);
      const objects = { folder: (JSON.parse(folder.stdout) as { id: string }).id, db: (JSON.parse(db.stdout) as { id: string }).id };
      const cluster = new Cluster(lab, { alpha, beta, witness }, data, dataRoot, objects, workload);
      await cluster.waitInSync('alpha', 30_000);
      cluster.mark('note', 'setup done: alpha primary, beta backup, both objects in sync');
      workload.start();
      return cluster;
    } catch (error) {
      await Promise.all(nodes.map((node) => node.destroy()));
      await lab?.destroy();
      throw error;
    }
  }

  mark(kind: Mark['kind'], what: string, node?: NodeName): Mark {
    const mark = { atMono: monoMs(), atWall: Date.now(), what, kind, ...(node ? { node } : {}) };
    this.marks.push(mark);
    return mark;
  }

  /** Lets the workload run for a while. */
  async run(ms: number): Promise<void> {
    await sleep(ms);
  }

  // --- process faults -----------------------------------------------------------------------

  /** kill -9; the mark is taken once the process is gone. */
  async kill(name: NodeName): Promise<Mark> {
    await this.nodes[name].kill();
    return this.mark('kill', `kill -9 ${name}`, name);
  }

  /** SIGSTOP; the mark is taken once the kernel shows the process stopped. */
  async freeze(name: NodeName): Promise<Mark> {
    const pid = this.nodes[name].pid;
    this.nodes[name].signal('SIGSTOP');
    await waitUntil(`${name} to be stopped`, () => processState(pid) === 'T', 2000);
    return this.mark('stop', `SIGSTOP ${name}`, name);
  }

  async thaw(name: NodeName): Promise<Mark> {
    const mark = this.mark('cont', `SIGCONT ${name}`, name);
    this.nodes[name].signal('SIGCONT');
    return mark;
  }

  /** Starts a stopped (killed) node again on its home; the mark is taken before the process is spawned. */
  async restart(name: NodeName): Promise<Mark> {
    const mark = this.mark('start', `restart ${name}`, name);
    await this.nodes[name].serve([], {}, this.commands[name]);
    this.mark('note', `${name} serves again`, name);
    return mark;
  }

  // --- network faults (need the lab) ----------------------------------------------------------

  private get netLab(): Lab {
    if (!this.lab) throw new Error('this scenario needs network namespaces');
    return this.lab;
  }

  async partition(a: NodeName, b: NodeName): Promise<Mark> {
    await this.netLab.partition(a, b);
    return this.mark('net', `partition ${a} | ${b}`);
  }

  async isolate(a: NodeName): Promise<Mark> {
    await this.netLab.isolate(a);
    return this.mark('net', `isolate ${a}`, a);
  }

  async oneWay(from: NodeName, to: NodeName): Promise<Mark> {
    await this.netLab.oneWay(from, to);
    return this.mark('net', `drop ${from} -> ${to}`);
  }

  async heal(a?: NodeName, b?: NodeName): Promise<Mark> {
    await this.netLab.heal(a, b);
    return this.mark('net', a ? `heal ${a} | ${b}` : 'heal all');
  }

  async flap(a: NodeName, b: NodeName, options: { downMs: number; upMs: number; times: number }): Promise<Mark> {
    this.mark('net', `flap ${a} | ${b} (${options.times} x ${options.downMs} ms down, ${options.upMs} ms up)`);
    await this.netLab.flap(a, b, options);
    return this.mark('net', `flap ${a} | ${b} over`);
  }

  // --- waiting and looking -------------------------------------------------------------------

  async status(name: NodeName, timeoutMs = 1000): Promise<StatusReport | null> {
    return statusWithin(this.nodes[name].home, timeoutMs);
  }

  /** Waits until `name` acts as primary; returns the mark. */
  async waitActing(name: DataNode, timeoutMs: number): Promise<Mark> {
    await waitUntil(
      `${name} to act as primary`,
      async () => {
        const status = await this.status(name, 500);
        return status?.node.role === 'primary' && status.node.acting;
      },
      timeoutMs,
    );
    return this.mark('note', `${name} acts as primary`, name);
  }

  /** Waits until the node's event log shows `type` after the given wall time. */
  async waitEvent(name: NodeName, type: string, afterWall: number, timeoutMs: number): Promise<EventRecord> {
    let found: EventRecord | undefined;
    await waitUntil(
      `${name} to record ${type}`,
      async () => {
        found = (await this.events(name)).find((e) => e.type === type && Date.parse(e.at) >= afterWall - 5);
        return found !== undefined;
      },
      timeoutMs,
      100,
    );
    return found!;
  }

  async events(name: NodeName): Promise<EventRecord[]> {
    return this.nodes[name].call('events:list', {});
  }

  /** Waits until every object on `name` (the primary) is in sync with nothing pending. */
  async waitInSync(name: DataNode, timeoutMs: number): Promise<void> {
    await waitUntil(
      `${name}'s objects to be in sync`,
      async () => {
        const status = await this.status(name);
        return (status?.objects.length ?? 0) === 2 && status!.objects.every((o) => o.state === 'in-sync' && o.pending === 0);
      },
      timeoutMs,
      100,
    );
  }

  /**
   * Invariant 2, right after a failover: every write of the old primary that the new primary's
   * copies held before the fault is still in them now that it is the primary.
   */
  async checkNewPrimary(name: DataNode, fault: Mark): Promise<void> {
    // The workload writes files in place on the new primary: no half-written file while we read.
    await this.workload.pause();
    try {
      this.checkNewPrimaryNow(name, fault);
    } finally {
      this.workload.resume();
    }
  }

  private checkNewPrimaryNow(name: DataNode, fault: Mark): void {
    const seen = this.workload.observedOn(name, fault.atMono);
    const { seqs } = treeLineage(this.data[name].folder);
    const rows = this.workload.liveRows(name);
    const missing = seen.filter((o) => !(this.workload.bySeq.get(o.seq)!.kind === 'file' ? seqs.has(o.seq) : rows.has(o.seq)));
    if (missing.length > 0) {
      this.violations.push(`invariant 2: ${missing.length} of the ${seen.length} writes ${name} had applied before "${fault.what}" are not on it as the new primary: ${describeWrites(missing.map((o) => this.workload.bySeq.get(o.seq)!))}`);
    } else this.notes.push(`new primary ${name} holds all ${seen.length} writes it had applied as backup before "${fault.what}"`);
  }

  // --- the end: converge, collect, check ------------------------------------------------------

  /** Stops the workload, waits for the copies to converge, and checks every invariant. */
  async finish(scenario: Scenario): Promise<string[]> {
    await this.workload.stop();
    this.mark('note', 'workload stopped');
    const summary: string[] = [];
    const final = await this.converge(summary);
    const events = {} as Record<NodeName, EventRecord[]>;
    for (const name of NodeNames) events[name] = await this.events(name).catch(() => []);
    const intervals = this.intervals(events);
    this.checkIntervals(intervals);
    this.checkClaims(intervals);
    this.checkExpectation(scenario.expect, events, final);
    if (final) this.checkData(final, intervals, summary);
    summary.push(`acting intervals: ${intervals.map((i) => `${i.node} [${fmt(i.start)} .. ${Number.isFinite(i.end) ? fmt(i.end) : 'end'}] (${i.startedBy} → ${i.endedBy})`).join('; ')}`);
    const counts = this.workload.writesCount;
    summary.push(`writes: ${counts.files} files, ${counts.rows} rows (${this.workload.failedWrites} failed); ${this.workload.observed.size} seen replicated by the observer; ${this.workload.actingClaims.length} status answers claiming to act (each checked against the intervals)`);
    if (this.workload.bothActing.length > 0) summary.push(`note: ${this.workload.bothActing.length} status rounds had both nodes claim to act (checked against the event logs)`);
    summary.push(...this.notes);
    return summary;
  }

  /** Invariant 4: one primary everyone agrees on, objects in sync, identical copies. Returns the primary. */
  private async converge(summary: string[]): Promise<DataNode | null> {
    const started = monoMs();
    let last = '';
    for (;;) {
      const problem = await this.convergenceProblem();
      if (problem === null) break;
      last = problem.text;
      if (monoMs() - started > ConvergeMs) {
        this.violations.push(`invariant 4: no convergence within ${ConvergeMs} ms: ${last}`);
        return problem.primary;
      }
      await sleep(250);
    }
    const primary = (await this.primaryNow())!;
    const tookMs = Math.round(monoMs() - started);
    summary.push(`converged ${tookMs} ms after the workload stopped; primary ${primary}${tookMs > 5000 ? ` (slow; last waited for: ${last})` : ''}`);
    return primary;
  }

  private async primaryNow(): Promise<DataNode | null> {
    for (const node of DataNodes) {
      const status = await this.status(node);
      if (status?.node.role === 'primary' && status.node.acting) return node;
    }
    return null;
  }

  private async convergenceProblem(): Promise<{ text: string; primary: DataNode | null } | null> {
    const statuses = {} as Record<NodeName, StatusReport | null>;
    for (const name of NodeNames) statuses[name] = await this.status(name);
    for (const name of NodeNames) if (!statuses[name]) return { text: `${name} does not answer`, primary: null };
    const acting = DataNodes.filter((n) => statuses[n]!.node.role === 'primary' && statuses[n]!.node.acting);
    if (acting.length !== 1) return { text: `${acting.length} nodes act as primary (${DataNodes.map((n) => `${n}: ${statuses[n]!.node.role}${statuses[n]!.node.acting ? ' acting' : ''}`).join(', ')})`, primary: null };
    const primary = acting[0]!;
    const backup: DataNode = primary === 'alpha' ? 'beta' : 'alpha';
    const p = statuses[primary]!;
    const b = statuses[backup]!;
    if (b.node.role !== 'backup') return { text: `${backup} is ${b.node.role}, not backup`, primary };
    if (p.node.epoch !== b.node.epoch) return { text: `epochs differ: ${primary} ${p.node.epoch}, ${backup} ${b.node.epoch}`, primary };
    const w = statuses.witness!;
    const roleOnWitness = (n: DataNode) => w.peers.find((peer) => peer.name === n)?.role;
    if (roleOnWitness(primary) !== 'primary' || roleOnWitness(backup) !== 'backup') {
      return { text: `the witness sees ${primary} as ${roleOnWitness(primary)} and ${backup} as ${roleOnWitness(backup)}`, primary };
    }
    for (const status of [p, b, w]) {
      const down = status.peers.filter((peer) => peer.state !== 'up');
      if (down.length > 0) return { text: `${status.node.name} sees ${down.map((d) => `${d.name} ${d.state}`).join(', ')}`, primary };
    }
    const behind = p.objects.filter((o) => o.state !== 'in-sync' || o.pending > 0);
    if (p.objects.length !== 2 || behind.length > 0) return { text: `objects on ${primary}: ${p.objects.map((o) => `${o.id} ${o.state} ${o.pending} pending`).join(', ')}`, primary };
    const diff = this.treeDiff(primary, backup);
    if (diff.length > 0) return { text: `folders differ: ${diff.slice(0, 5).join('; ')}${diff.length > 5 ? ` (+${diff.length - 5})` : ''}`, primary };
    const rows = [this.workload.rowDump(primary), this.workload.rowDump(backup)];
    if (rows[0] !== rows[1]) return { text: `databases differ: ${primary} ${rows[0]!.split('\n').length} rows, ${backup} ${rows[1]!.split('\n').length} rows`, primary };
    return null;
  }

  private treeDiff(a: DataNode, b: DataNode): string[] {
    const read = (node: DataNode) => new Map(listFiles(this.data[node].folder).map((path) => [path, readOrNull(join(this.data[node].folder, path))]));
    const left = read(a);
    const right = read(b);
    const out: string[] = [];
    for (const [path, content] of left) {
      const other = right.get(path);
      if (other === undefined) out.push(`only on ${a}: ${path}`);
      else if (!content || !other || !content.equals(other)) out.push(`differs: ${path}`);
    }
    for (const path of right.keys()) if (!left.has(path)) out.push(`only on ${b}: ${path}`);
    return out;
  }

  /** Invariant 1's raw material: when each data node acted as primary, from its own events and our kills and freezes. */
  intervals(events: Record<NodeName, EventRecord[]>): Interval[] {
    const out: Interval[] = [];
    for (const node of DataNodes) {
      const cuts = this.marks.filter((m) => m.node === node && (m.kind === 'kill' || m.kind === 'stop'));
      const list = events[node];
      for (let i = 0; i < list.length; i++) {
        const event = list[i]!;
        if (event.type !== 'role.acting') continue;
        const start = Number(event.sinceMono);
        // Still acting from an earlier role.acting (no end in between): the same interval.
        if (out.some((x) => x.node === node && x.start <= start && start < x.end)) continue;
        let end = Number.POSITIVE_INFINITY;
        let endedBy = 'still acting';
        for (const later of list.slice(i + 1)) {
          const stop = later.type === 'role.fenced' ? Number(later.stoppedAtMono) : later.type === 'role.demoted' && later.stoppedActingAtMono !== undefined ? Number(later.stoppedActingAtMono) : null;
          if (stop !== null) {
            end = stop;
            endedBy = later.type;
            break;
          }
          if (later.type === 'role.acting' || later.type === 'node.started') break;
        }
        const cut = cuts.find((m) => m.atMono > start && m.atMono < end);
        if (cut) {
          end = cut.atMono;
          endedBy = cut.what;
        }
        out.push({ node, start, end, startedBy: `role.acting #${event.id}`, endedBy });
      }
    }
    return out.sort((a, b) => a.start - b.start);
  }

  /** Invariant 1: no two intervals of different nodes overlap. */
  private checkIntervals(intervals: Interval[]): void {
    for (const a of intervals) {
      if (!(a.start <= a.end)) this.violations.push(`invariant 1: ${a.node} has an interval ending before it starts (${fmt(a.start)} .. ${fmt(a.end)})`);
      for (const b of intervals) {
        if (a.node >= b.node) continue;
        if (a.start < b.end && b.start < a.end) {
          const overlap = Math.min(a.end, b.end) - Math.max(a.start, b.start);
          this.violations.push(
            `invariant 1: two primaries for ${Number.isFinite(overlap) ? `${overlap.toFixed(1)} ms` : 'ever'}: ${a.node} [${fmt(a.start)} .. ${fmt(a.end)}] (${a.endedBy}) and ${b.node} [${fmt(b.start)} .. ${fmt(b.end)}] (${b.endedBy})`,
          );
        }
      }
    }
  }

  /**
   * Invariant 1 rests on the event logs being complete: every time a node told us it acts as
   * primary (a status answer), one of its intervals must cover that moment.
   */
  private checkClaims(intervals: Interval[]): void {
    const uncovered = this.workload.actingClaims.filter((claim) => !intervals.some((i) => i.node === claim.node && i.start <= claim.to && claim.from < i.end));
    if (uncovered.length > 0) {
      const first = uncovered[0]!;
      this.violations.push(`invariant 1: ${uncovered.length} status answers said a node acts as primary when its event log says it did not (first: ${first.node} between ${fmt(first.from)} and ${fmt(first.to)})`);
    }
  }

  private checkExpectation(expect: ScenarioExpectation, events: Record<NodeName, EventRecord[]>, final: DataNode | null): void {
    // A node that started more often than the test started it crashed on its own.
    for (const name of NodeNames) {
      const started = events[name].filter((e) => e.type === 'node.started').length;
      const restarts = this.marks.filter((m) => m.kind === 'start' && m.node === name).length;
      if (started !== 1 + restarts) this.violations.push(`${name} started ${started} times, the test started it ${1 + restarts} times: it crashed (see its log)`);
      const errors = events[name].filter((e) => e.type === 'node.error');
      if (errors.length > 0) this.violations.push(`${name} recorded node.error: ${errors.map((e) => e.message).join('; ')}`);
    }
    if (final && expect.finalPrimary !== 'either' && final !== expect.finalPrimary) this.violations.push(`expected ${expect.finalPrimary} to be primary at the end, found ${final}`);
    const promoted = DataNodes.flatMap((node) => events[node].filter((e) => e.type === 'role.promoted').map((e) => `${node} (epoch ${String(e.epoch)})`));
    if (expect.roleChange === 'never' && promoted.length > 0) this.violations.push(`no role change expected, yet promoted: ${promoted.join(', ')}`);
    if (expect.roleChange === 'failover') {
      const done = DataNodes.flatMap((node) => events[node].filter((e) => e.type === 'failover.done'));
      if (done.length === 0) this.violations.push('a failover was expected, and no node recorded failover.done');
      // The deposed primary must have kept what it wrote that the new one may not have.
      for (const node of DataNodes) {
        const demoted = events[node].some((e) => e.type === 'role.demoted');
        const archived = events[node].some((e) => e.type === 'divergence.archived');
        if (demoted && !archived) this.violations.push(`${node} stepped down for a later primary without a divergence.archived event`);
      }
    }
  }

  /** Invariants 2 and 3 against the converged data. */
  private checkData(primary: DataNode, intervals: Interval[], summary: string[]): void {
    const workload = this.workload;
    const { seqs: lineage } = treeLineage(this.data[primary].folder);
    const rows = workload.liveRows(primary);
    const inFinal = (write: WriteRecord) => (write.kind === 'file' ? lineage.has(write.seq) : rows.has(write.seq));

    // Invariant 2: everything seen replicated is in the final data.
    const lost = [...workload.observed.values()].filter((o) => !inFinal(workload.bySeq.get(o.seq)!));
    if (lost.length > 0) {
      this.violations.push(`invariant 2: ${lost.length} writes seen on the other node's copy are not in the final data: ${lost.slice(0, 5).map((o) => `#${o.seq} seen on ${o.on} at ${fmt(o.atMono)}`).join(', ')}`);
    }

    // Invariant 3: what is not in the final data is in its node's divergence archive; nothing
    // written on a node while another acted reaches the final data.
    const archives = new Map(DataNodes.map((node) => [node, this.archiveOf(node)]));
    const versions = new Map(DataNodes.map((node) => [node, this.versionsOf(node)]));
    let divergent = 0;
    let onlyInVersions = 0;
    let alsoInVersions = 0;
    const missing: WriteRecord[] = [];
    const leaked: string[] = [];
    for (const write of workload.writes) {
      const otherActing = intervals.find((i) => i.node !== write.node && i.start <= write.t0 && write.t0 < i.end);
      if (inFinal(write)) {
        if (otherActing) leaked.push(`#${write.seq} (${write.kind}) written on ${write.node} at ${fmt(write.t0)} while ${otherActing.node} acted`);
        continue;
      }
      divergent++;
      const archive = archives.get(write.node)!;
      if (write.kind === 'file' && versions.get(write.node)!.has(write.seq)) alsoInVersions++;
      if (write.kind === 'file' ? archive.files.has(write.seq) : archive.rows.has(write.seq)) continue;
      if (write.kind === 'file' && versions.get(write.node)!.has(write.seq)) {
        onlyInVersions++;
        missing.push(write);
        continue;
      }
      missing.push(write);
    }
    if (leaked.length > 0) this.violations.push(`invariant 3 (fencing): ${leaked.length} writes made on a node while the other acted reached the final data: ${leaked.slice(0, 5).join('; ')}`);
    if (missing.length > 0) {
      this.violations.push(
        `invariant 3: ${missing.length} writes are neither in the final data nor in their node's divergence archive${onlyInVersions > 0 ? ` (${onlyInVersions} of them only in the versions area)` : ''}: ${describeWrites(missing)}`,
      );
    }
    summary.push(
      `divergent writes (not in the final data): ${divergent}, all in their node's divergence archive${missing.length > 0 ? ' EXCEPT the ones reported' : ''}${alsoInVersions > 0 ? ` (${alsoInVersions} divergent file versions are also in the versions area, set aside from the live copy)` : ''}; archives: ${DataNodes.map((n) => `${n} ${archives.get(n)!.dirs} dir(s), ${archives.get(n)!.files.size} file versions, ${archives.get(n)!.rows.size} rows`).join('; ')}`,
    );
  }

  /** What a node's divergence archives hold: file versions (by their history) and rows. */
  archiveOf(node: DataNode): { dirs: number; files: Set<number>; rows: Set<number> } {
    const root = join(this.nodes[node].home, 'divergence');
    const files = new Set<number>();
    const rows = new Set<number>();
    if (!existsSync(root)) return { dirs: 0, files, rows };
    const dirs = readdirSync(root);
    for (const dir of dirs) {
      const folder = join(root, dir, this.objects.folder, 'files');
      for (const path of listFiles(folder)) for (const seq of parseHeader(readFileSync(join(folder, path)))?.hist ?? []) files.add(seq);
      const db = join(root, dir, this.objects.db, 'app.db');
      for (const id of databaseRows(db)) rows.add(id);
    }
    return { dirs: dirs.length, files, rows };
  }

  /** File versions a node's folder replica kept in its versions area. */
  private versionsOf(node: DataNode): Set<number> {
    const root = join(this.nodes[node].home, 'versions', this.objects.folder);
    const out = new Set<number>();
    for (const path of listFiles(root)) {
      const header = parseHeader(readOrNull(join(root, path)) ?? '');
      if (header) out.add(header.seq);
    }
    return out;
  }

  async destroy(): Promise<void> {
    await this.workload.stop().catch(() => undefined);
    this.workload.close();
    await Promise.all(Object.values(this.nodes).map((node) => node.destroy()));
    await this.lab?.destroy();
    if (!process.env.UNDERSTUDY_KEEP_TEST_HOMES) rmSync(this.dataRoot, { recursive: true, force: true });
    else console.log(`# kept the data: ${this.dataRoot}`);
  }

  /** Everything a run needs: start, script, finish, check, clean up. */
  static async runScenario(scenario: Scenario, options: { lab: boolean }): Promise<ScenarioResult> {
    const started = monoMs();
    const cluster = await Cluster.start(options);
    try {
      const setupMs = monoMs() - started;
      let summary: string[];
      try {
        await scenario.run(cluster);
        summary = await cluster.finish(scenario);
      } catch (error) {
        // What the nodes said last, for the post-mortem.
        for (const node of Object.values(cluster.nodes)) console.log(`# ${node.name} (last output):\n${node.output.slice(-3000).replace(/^/gm, '#   ')}`);
        console.log(`# marks: ${cluster.marks.map((m) => `${fmt(m.atMono - started)} ${m.what}`).join(' | ')}`);
        throw error;
      }
      summary.unshift(`setup ${Math.round(setupMs)} ms; ${cluster.marks.map((m) => `${fmt(m.atMono - started)} ${m.what}`).join(' | ')}`);
      return { ms: monoMs() - started, violations: cluster.violations, summary };
    } finally {
      await cluster.destroy();
    }
  }
}

/** Which writes, briefly, for a failure message. */
function describeWrites(writes: WriteRecord[]): string {
  const shown = writes.slice(0, 8).map((w) => `#${w.seq} ${w.kind}${w.path ? ` ${w.path}` : ''} on ${w.node} at ${fmt(w.t0)}`);
  return `${shown.join(', ')}${writes.length > 8 ? ` and ${writes.length - 8} more` : ''}`;
}

function fmt(ms: number): string {
  return ms.toFixed(1);
}

function readOrNull(path: string): Buffer | null {
  try {
    return readFileSync(path);
  } catch {
    return null;
  }
}

/** The state letter of a process (R, S, T...) from /proc, or null when it is gone. */
function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return null;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitUntil(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 25): Promise<void> {
  const deadline = monoMs() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    if (monoMs() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${(lastError as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}
