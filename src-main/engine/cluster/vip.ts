/**
 * The optional virtual IP address that moves with the primary role (`understudy vip set`):
 * added when this node starts acting as primary, removed when it stops. Linux only, through
 * `ip addr add/del`, then a gratuitous ARP (iputils `arping -U`) so that the shop's switches
 * and clients learn the new owner at once. Where that is not possible (another OS, not root,
 * no `ip`), it is skipped with one clear line rather than failing the role change.
 */
import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { UnderstudyError } from '../errors.js';

export interface VipSettings {
  /** ADDRESS/PREFIX, e.g. 192.168.1.50/24. */
  address: string;
  /** The network interface to hold it on, e.g. eth0. */
  dev: string;
}

export type VipOutcome = { ok: true; detail: string } | { ok: false; reason: string };

export function parseVip(text: string, dev: string): VipSettings {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(text);
  const version = match ? isIP(match[1]!) : 0;
  const prefix = match ? Number(match[2]) : -1;
  if (!match || version === 0 || prefix < 1 || prefix > (version === 4 ? 32 : 128)) {
    throw new UnderstudyError('usage', `'${text}' is not ADDRESS/PREFIX`, { hint: 'for example: understudy vip set 192.168.1.50/24 --dev eth0' });
  }
  if (!/^[A-Za-z0-9_.:@-]{1,15}$/.test(dev)) throw new UnderstudyError('usage', `'${dev}' is not an interface name`, { hint: "see 'ip link' for this machine's interfaces" });
  return { address: text, dev };
}

function run(command: string, args: string[]): Promise<{ ok: boolean; output: string; missing: boolean }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: 5000 }, (error, stdout, stderr) => {
      const missing = (error as NodeJS.ErrnoException | null)?.code === 'ENOENT';
      resolve({ ok: !error, output: `${stdout}${stderr}`.trim(), missing });
    });
  });
}

function unsupported(): string | null {
  if (process.platform !== 'linux') return `moving a virtual IP is supported on Linux only (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'moving a virtual IP needs root (CAP_NET_ADMIN); the service unit runs as root for this';
  return null;
}

/** Takes the address (this node became primary). Already held counts as done. */
export async function takeVip(vip: VipSettings): Promise<VipOutcome> {
  const why = unsupported();
  if (why) return { ok: false, reason: why };
  const added = await run('ip', ['addr', 'add', vip.address, 'dev', vip.dev]);
  if (added.missing) return { ok: false, reason: "the 'ip' command (iproute2) is not installed" };
  if (!added.ok && !/File exists/.test(added.output)) return { ok: false, reason: `ip addr add ${vip.address} dev ${vip.dev} failed: ${added.output}` };
  const host = vip.address.split('/')[0]!;
  if (isIP(host) !== 4) return { ok: true, detail: 'added (IPv6: the kernel announces it)' };
  const arp = await run('arping', ['-U', '-c', '1', '-I', vip.dev, host]);
  if (arp.missing) return { ok: true, detail: "added; no gratuitous ARP sent ('arping' from iputils-arping is not installed)" };
  return { ok: true, detail: arp.ok ? 'added and announced (gratuitous ARP)' : `added; the gratuitous ARP failed: ${arp.output}` };
}

/** Gives the address up (this node stops acting as primary). Not held counts as done. */
export async function releaseVip(vip: VipSettings): Promise<VipOutcome> {
  const why = unsupported();
  if (why) return { ok: false, reason: why };
  const removed = await run('ip', ['addr', 'del', vip.address, 'dev', vip.dev]);
  if (removed.missing) return { ok: false, reason: "the 'ip' command (iproute2) is not installed" };
  if (!removed.ok && !/Cannot assign|not found|does not exist/i.test(removed.output)) return { ok: false, reason: `ip addr del ${vip.address} dev ${vip.dev} failed: ${removed.output}` };
  return { ok: true, detail: 'removed' };
}
