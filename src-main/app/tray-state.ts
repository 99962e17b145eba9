/**
 * The tray icon's colour from a node's status, and the sentence under it. Green: protected
 * and in sync. Amber: catching up, a peer suspect, a license that needs attention. Red: the
 * peer down, an object in error or not in sync, or a primary that may not act. Pure: the
 * Electron shell only paints what this returns.
 */
import type { StatusReport } from '../contract/control.js';

export type TrayColour = 'green' | 'amber' | 'red';

export interface TrayState {
  colour: TrayColour;
  /** One line for the tooltip: the worst thing first. */
  summary: string;
}

export function trayState(status: StatusReport | null): TrayState {
  if (!status) return { colour: 'red', summary: 'Understudy: the engine does not answer' };
  const red: string[] = [];
  const amber: string[] = [];
  const { node } = status;
  if (node.role === 'standalone') amber.push('not paired yet: nothing is protected');
  if (node.role === 'primary' && !node.acting) red.push('this primary has stepped down (no lease)');
  for (const peer of status.peers) {
    if (peer.role === 'witness') {
      if (peer.state !== 'up') amber.push(`witness '${peer.name}' is ${peer.state}`);
      continue;
    }
    if (peer.state === 'down') red.push(`${peer.role} '${peer.name}' is down`);
    else if (peer.state === 'suspect') amber.push(`${peer.role} '${peer.name}' is missing heartbeats`);
  }
  for (const object of status.objects) {
    if (object.state === 'error') red.push(`${object.source}: ${object.error ?? 'error'}`);
    else if (object.paused) amber.push(`${object.source} is paused by you (${object.pending} changes held back)`);
    else if (object.state === 'paused') red.push(`${object.source} is not being replicated (backup away)`);
    else if (object.state === 'catching-up' || object.state === 'initial-sync') amber.push(`${object.source} is ${object.state} (${object.pending} pending)`);
    if (object.lastAudit?.result === 'failed') red.push(`the last audit of ${object.source} failed`);
  }
  if (status.license.warnings.length > 0) amber.push(`license: ${status.license.state}`);
  if (node.maintenance) amber.push('maintenance mode is on');
  if (red.length > 0) return { colour: 'red', summary: `Understudy: ${red[0]}${red.length + amber.length > 1 ? ` (+${red.length + amber.length - 1} more)` : ''}` };
  if (amber.length > 0) return { colour: 'amber', summary: `Understudy: ${amber[0]}${amber.length > 1 ? ` (+${amber.length - 1} more)` : ''}` };
  const objects = status.objects.length;
  // "Ask me" is a choice, not a fault: green, but said.
  const policy = node.failoverPolicy === 'ask' && node.role !== 'witness' ? '; failover: ask me' : '';
  return { colour: 'green', summary: `Understudy: ${objects} object${objects === 1 ? '' : 's'} protected and in sync (${node.role}${policy})` };
}
