/**
 * Which events become desktop notifications, and when to hold back. Notified: a peer lost,
 * a failover, a switchover done, lag above its threshold for over a minute, a protection
 * error. A flapping link must not cause a storm: after FlapLimit notifications about one
 * subject within FlapWindowMs, further ones are held and one summary says how many were held
 * when the window ends. Pure, with an injected clock: the Electron shell only shows what
 * this returns.
 */
import type { EventRecord, StatusReport } from '../contract/control.js';

export interface DesktopNotification {
  title: string;
  body: string;
  /** red: something is wrong; green: something finished well. */
  urgency: 'critical' | 'normal';
}

/** Notifications about one subject (a peer, an object) allowed within FlapWindowMs. @default 3 */
export const FlapLimit = 3;
/** @default 10 minutes */
export const FlapWindowMs = 10 * 60_000;
/** Lag above this for LagForMs is notified. @default 30 s */
export const DefaultLagThresholdMs = 30_000;
/** @default 1 minute */
export const LagForMs = 60_000;

export class NotificationPolicy {
  private readonly sent = new Map<string, number[]>();
  private readonly held = new Map<string, { count: number; last: DesktopNotification }>();
  private readonly lagSince = new Map<string, number>();
  private readonly lagNotified = new Set<string>();

  constructor(
    private readonly now: () => number = Date.now,
    private readonly lagThresholdMs = DefaultLagThresholdMs,
  ) {}

  /** What to show for this event (null: nothing). */
  onEvent(event: EventRecord): DesktopNotification | null {
    const peerName = typeof event.peerName === 'string' ? event.peerName : 'the peer';
    switch (event.type) {
      case 'peer.down':
        return this.gate(`peer:${String(event.peer)}`, { title: `Lost contact with '${peerName}'`, body: event.message, urgency: 'critical' });
      case 'failover.done':
        return this.gate('role', { title: 'Failover: this machine took over', body: event.message, urgency: 'critical' });
      case 'failover.needed':
        return this.gate('role', { title: 'The primary is down', body: event.message, urgency: 'critical' });
      case 'switchover.done':
        return { title: 'Switchover done', body: event.message, urgency: 'normal' };
      case 'role.fenced':
      case 'role.demoted':
        return this.gate('role', { title: 'This machine is no longer the primary', body: event.message, urgency: 'critical' });
      case 'folder.error':
      case 'sqlite.error':
      case 'audit.failed':
      case 'node.error':
        return this.gate(`object:${String(event.object ?? event.type)}`, { title: 'Protection error', body: event.message, urgency: 'critical' });
      default:
        return null;
    }
  }

  /** Lag above the threshold for over a minute, once per episode; and the summaries of held notifications. */
  onStatus(status: StatusReport): DesktopNotification[] {
    const out: DesktopNotification[] = [];
    const now = this.now();
    for (const object of status.objects) {
      if (object.lagMs <= this.lagThresholdMs) {
        this.lagSince.delete(object.id);
        this.lagNotified.delete(object.id);
        continue;
      }
      const since = this.lagSince.get(object.id) ?? now;
      this.lagSince.set(object.id, since);
      if (now - since >= LagForMs && !this.lagNotified.has(object.id)) {
        this.lagNotified.add(object.id);
        out.push({ title: 'The backup is falling behind', body: `${object.source} is ${Math.round(object.lagMs / 1000)} s behind (${object.pending} changes pending)`, urgency: 'critical' });
      }
    }
    for (const [subject, { count, last }] of this.held) {
      const times = this.sent.get(subject) ?? [];
      if (times.length > 0 && now - times[0]! < FlapWindowMs) continue;
      this.held.delete(subject);
      out.push({ title: last.title, body: `${count} more like this were held back in the last ${FlapWindowMs / 60_000} minutes (the link is flapping). Latest: ${last.body}`, urgency: last.urgency });
    }
    return out;
  }

  private gate(subject: string, notification: DesktopNotification): DesktopNotification | null {
    const now = this.now();
    const times = (this.sent.get(subject) ?? []).filter((at) => now - at < FlapWindowMs);
    if (times.length >= FlapLimit) {
      const held = this.held.get(subject);
      this.held.set(subject, { count: (held?.count ?? 0) + 1, last: notification });
      this.sent.set(subject, times);
      return null;
    }
    times.push(now);
    this.sent.set(subject, times);
    return notification;
  }
}
