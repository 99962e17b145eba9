/** Human-readable output of status and events (the --json forms are the contract's objects). */
import type { EventRecord, StatusReport } from '../contract/control.js';
import { PeerStateLabels } from '../contract/control.js';

export function formatStatus(status: StatusReport): string {
  const { node } = status;
  const lines = [
    `Node     ${node.name}  (${node.role}, epoch ${node.epoch})`,
    `Id       ${node.id}`,
    `Listens  ${node.listen}  (heartbeats on port ${node.heartbeatPort})`,
  ];
  if (node.role === 'primary') {
    const lease = node.leaseMs === null ? (status.witness ? 'no lease' : 'no lease needed (no witness)') : `lease ${node.leaseMs} ms left`;
    lines.push(`Acting   ${node.acting ? 'yes' : 'NO: stepped down until it can reach the backup or the witness'}; ${lease}`);
  }
  if (node.maintenance) lines.push('Mainten. ON: no automatic failover, no check-triggered switchover');
  if (node.role === 'primary' || node.role === 'backup') {
    lines.push(status.witness ? `Witness  ${status.witness.name}: ${PeerStateLabels[status.witness.state]}` : 'Witness  none: no automatic failover (failover --force on the backup)');
  }
  if (status.peers.length === 0) {
    lines.push('Peers    none: this node is not paired yet');
  }
  for (const peer of status.peers) {
    const rtt = peer.rttMs === null ? '' : `, rtt ${peer.rtt ? (peer.rtt.lastUs / 1000).toFixed(2) : peer.rttMs} ms`;
    const seen = peer.lastSeenAt ? `, last seen ${peer.lastSeenAt}` : '';
    lines.push(`Peer     ${peer.name} (${peer.role}) at ${peer.address}: ${PeerStateLabels[peer.state]}${rtt}${seen}`);
    lines.push(`         id ${peer.id}, data link ${peer.link}`);
  }
  for (const object of status.objects) {
    const progress = object.progress ? `, ${object.progress.filesDone}/${object.progress.files} files` : '';
    lines.push(`Object   ${object.id} ${object.kind} ${object.source} -> ${object.target}: ${object.state}, lag ${object.lagMs} ms, ${object.pending} pending${progress}`);
    if (object.paused) lines.push(`         paused by the admin: changes are captured, not sent ('understudy resume ${object.id}')`);
    if (object.stages) {
      const { capture, send, apply } = object.stages;
      const rate = object.throughput ? `; ${object.throughput.bytesPerSec} B/s, ${object.throughput.changesPerSec} changes/s` : '';
      lines.push(`         capture ${capture.lagMs} ms (${capture.changes}), send ${send.lagMs} ms (${send.changes}), apply ${apply.lagMs} ms (${apply.changes})${rate}`);
    }
    if (object.error) lines.push(`         error: ${object.error}`);
  }
  return lines.join('\n');
}

export function formatEvents(events: EventRecord[]): string {
  if (events.length === 0) return 'No events recorded.';
  return events.map((event) => `${event.at}  ${event.type.padEnd(16)}  ${event.message}`).join('\n');
}
