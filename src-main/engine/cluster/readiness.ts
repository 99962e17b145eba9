/**
 * Switchover readiness (`switchover --dry-run`): what would block a switchover now, and what
 * deserves a look, worked out from the node's facts alone so every rule is testable.
 */
import type { NodeRole, ObjectStatus, PeerState, ReadinessCheck, SwitchoverReadiness } from '../../contract/control.js';

/** An audit older than this is worth a look before a switchover (not a blocker). */
export const StaleAuditMs = 10 * 60_000;

export interface ReadinessFacts {
  role: NodeRole;
  peerName: string | null;
  peerState: PeerState | null;
  linkConnected: boolean;
  maintenance: boolean;
  switching: boolean;
  /** Primary only: whether it may act (holds its lease). */
  acting: boolean;
  witness: { name: string; state: PeerState } | null;
  objects: ObjectStatus[];
  hooks: { stopHere: boolean; startHere: boolean };
  nowMs: number;
}

export function switchoverReadiness(facts: ReadinessFacts): SwitchoverReadiness {
  const checks: ReadinessCheck[] = [];
  const add = (name: string, level: ReadinessCheck['level'], detail: string) => checks.push({ name, level, detail });
  if (facts.peerName === null || (facts.role !== 'primary' && facts.role !== 'backup')) {
    add('pair', 'blocker', 'this node is not paired: there is nothing to switch over to');
    return { ready: false, checks };
  }
  const peer = `'${facts.peerName}'`;
  add('peer', facts.peerState === 'up' && facts.linkConnected ? 'ok' : 'blocker', facts.peerState === 'up' && facts.linkConnected ? `${peer} is up and its data link connected` : `${peer} is ${facts.peerState ?? 'unknown'}${facts.linkConnected ? '' : ', data link disconnected'}`);
  add('maintenance', facts.maintenance ? 'blocker' : 'ok', facts.maintenance ? "maintenance mode is on ('understudy maintenance off')" : 'maintenance mode is off');
  if (facts.switching) add('switchover', 'blocker', 'a switchover is already running');
  if (facts.role === 'primary') add('lease', facts.acting ? 'ok' : 'blocker', facts.acting ? 'this node acts as primary' : 'this node holds no lease (it cannot reach the backup or the witness)');
  add('witness', facts.witness === null ? 'warning' : facts.witness.state === 'up' ? 'ok' : 'warning', facts.witness === null ? 'no witness: after the switchover, no automatic failover either' : `the witness '${facts.witness.name}' is ${facts.witness.state}`);
  for (const object of facts.objects) {
    if (object.paused) add(`paused ${object.id}`, 'blocker', `${object.id} is paused: its changes are not sent to the backup ('understudy resume ${object.id}')`);
    const inSync = object.state === 'in-sync' && object.pending === 0;
    add(`lag ${object.id}`, inSync ? 'ok' : 'blocker', inSync ? `${object.id} is in sync (lag ${object.lagMs} ms)` : `${object.id} is ${object.state}, ${object.pending} pending, lag ${object.lagMs} ms`);
    const audit = object.lastAudit ?? null;
    if (!audit) add(`audit ${object.id}`, 'warning', `${object.id} has not been audited yet ('understudy audit ${object.id}')`);
    else if (audit.result === 'failed') add(`audit ${object.id}`, 'blocker', `the last audit of ${object.id} failed: ${audit.detail ?? 'see the events'}`);
    else {
      const ageMs = facts.nowMs - Date.parse(audit.at);
      add(`audit ${object.id}`, ageMs > StaleAuditMs ? 'warning' : 'ok', `${object.id} was last audited ${Math.round(ageMs / 1000)} s ago: ${audit.result}`);
    }
  }
  if (facts.objects.length === 0) add('objects', 'warning', 'nothing is protected: a switchover would move no data');
  if (facts.role === 'primary' && !facts.hooks.stopHere) add('hooks', 'warning', "no stop hook on this node: the application is not stopped by Understudy before the switch ('hooks set --stop')");
  if (facts.role === 'backup' && !facts.hooks.startHere) add('hooks', 'warning', "no start hook on this node: the application is not started here by Understudy after the switch ('hooks set --start')");
  return { ready: !checks.some((c) => c.level === 'blocker'), checks };
}
