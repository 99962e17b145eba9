/**
 * The license as a running node handles it: events when a key is installed (by the admin or
 * from the peer) and when the license needs attention, a daily look in between, and the key
 * passed to the peers so the admin enters it once.
 */
import type { EventType, LicenseInstallResult, LicenseReport, LicenseView } from '../../contract/control.js';
import type { Store } from '../store/store.js';
import { Licensing } from './licensing.js';

/** How often a running node looks again (a term can end while it runs). */
const RecheckMs = 60 * 60_000;

export interface NodeLicenseOptions {
  store: Store;
  counted: () => boolean;
  record: (type: EventType, message: string, data: Record<string, unknown>) => void;
  /** Sends the key to every peer the node has a data link to. */
  offer: (key: string) => void;
}

export class NodeLicense {
  private readonly licensing: Licensing;
  private timer: NodeJS.Timeout | null = null;
  /** The warnings last reported, so each is said once until it changes (and again each day). */
  private lastWarned = '';
  private lastWarnedAt = 0;

  constructor(private readonly options: NodeLicenseOptions) {
    this.licensing = new Licensing({ store: options.store, writable: true, counted: options.counted });
  }

  start(): void {
    this.licensing.beginTrial();
    this.check();
    this.timer = setInterval(() => this.check(), RecheckMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  report(): LicenseReport {
    return this.licensing.report();
  }

  view(): LicenseView {
    return this.licensing.view();
  }

  keyText(): string | null {
    return this.licensing.keyText();
  }

  install(key: string): LicenseInstallResult {
    const result = this.licensing.install(key);
    if (result.changed) {
      this.installed(result.license, 'installed by the admin', 'admin');
      this.options.offer(this.licensing.keyText()!);
    }
    this.check();
    return result;
  }

  fromPeer(key: string, peerName: string): void {
    if (!this.licensing.adoptFromPeer(key)) return;
    this.installed(this.licensing.report(), `received from '${peerName}'`, 'peer');
    this.check();
  }

  assertMayConfigure(what: string): void {
    this.licensing.assertMayConfigure(what);
  }

  private installed(license: LicenseReport, how: string, source: 'admin' | 'peer'): void {
    this.options.record('license.installed', `license ${license.licenseId} (${license.tier} for ${license.customer}) ${how}: ${license.summary}`, {
      source,
      licenseId: license.licenseId,
      tier: license.tier,
      customer: license.customer,
      expiresAt: license.expiresAt,
      state: license.state,
    });
  }

  private check(): void {
    const license = this.licensing.report();
    const said = license.warnings.join(' ');
    const dayOld = Date.now() - this.lastWarnedAt > 86_400_000;
    if (said === '' || (said === this.lastWarned && !dayOld)) {
      this.lastWarned = said;
      return;
    }
    this.lastWarned = said;
    this.lastWarnedAt = Date.now();
    this.options.record('license.warning', license.warnings.join(' '), { state: license.state, tierNeeded: license.tierNeeded, warnings: license.warnings });
  }
}
