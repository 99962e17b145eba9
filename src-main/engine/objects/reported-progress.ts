/**
 * What the primary last reported of an object (folder.progress, every second and at each
 * pause or resume), and how a backup's status shows it: the backup cannot measure the
 * primary's capture or journal, so its lag, stages and throughput are the primary's figures.
 */
import type { ObjectStages, ObjectState, ObjectStatus, Throughput } from '../../contract/control.js';
import type { LinkMessage } from '../link/messages.js';

export interface ReportedProgress {
  state: ObjectState;
  lagMs: number;
  pending: number;
  stages: ObjectStages | undefined;
  throughput: Throughput | undefined;
  paused: boolean;
}

export function reportedProgress(message: Extract<LinkMessage, { t: 'folder.progress' }>): ReportedProgress {
  return { state: message.state, lagMs: message.lagMs, pending: message.pending, stages: message.stages, throughput: message.throughput, paused: message.paused ?? false };
}

/** The reported part of a backup's ObjectStatus; `pending` is the backup's own count until the primary reports. */
export function reportedStatus(
  reported: ReportedProgress | null,
  local: { connected: boolean; error: string | null; pending: number },
): Pick<ObjectStatus, 'state' | 'lagMs' | 'pending' | 'stages' | 'throughput' | 'paused'> {
  return {
    state: local.error ? 'error' : local.connected ? (reported?.state ?? 'catching-up') : 'paused',
    lagMs: reported?.lagMs ?? 0,
    pending: reported?.pending ?? local.pending,
    ...(reported?.stages ? { stages: reported.stages } : {}),
    ...(reported?.throughput ? { throughput: reported.throughput } : {}),
    paused: reported?.paused ?? false,
  };
}
