/**
 * TLS 1.3 with mutual authentication by pinned public keys. Certificates are self-signed,
 * so no certificate authority is consulted: each side checks, right after the handshake and
 * before reading a single frame, that the other presented a key it pinned at pairing.
 */
import { createHash, X509Certificate } from 'node:crypto';
import type { TLSSocket, TlsOptions, ConnectionOptions } from 'node:tls';
import type { Identity } from '../identity/identity.js';

export const Alpn = {
  link: 'understudy/1',
  pair: 'understudy-pair/1',
  beat: 'understudy-hb/1',
} as const;
export type AlpnProtocol = (typeof Alpn)[keyof typeof Alpn];

/** How long a TLS handshake may take before the connection is dropped. */
export const HandshakeTimeoutMs = 3000;

export function serverTlsOptions(identity: Identity, protocols: AlpnProtocol[]): TlsOptions {
  return {
    cert: identity.certPem,
    key: identity.keyPem,
    minVersion: 'TLSv1.3',
    requestCert: true,
    // Self-signed certificates never chain to a CA: the pin check after the handshake decides.
    rejectUnauthorized: false,
    ALPNProtocols: protocols,
    handshakeTimeout: HandshakeTimeoutMs,
  };
}

export function clientTlsOptions(identity: Identity, protocol: AlpnProtocol, host: string, port: number): ConnectionOptions {
  return {
    host,
    port,
    cert: identity.certPem,
    key: identity.keyPem,
    minVersion: 'TLSv1.3',
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
    ALPNProtocols: [protocol],
  };
}

const peerCertificates = new WeakMap<TLSSocket, X509Certificate | null>();

/**
 * The certificate the other side presented. Node 20 hands it out only once per socket
 * (a second getPeerX509Certificate() returns undefined), so it is kept here per socket.
 */
export function peerCertificate(socket: TLSSocket): X509Certificate | null {
  let cert = peerCertificates.get(socket);
  if (cert === undefined) {
    cert = socket.getPeerX509Certificate() ?? null;
    peerCertificates.set(socket, cert);
  }
  return cert;
}

/** The SHA-256 of the public key the other side proved it holds, or null if it showed none. */
export function peerKeyHash(socket: TLSSocket): Buffer | null {
  const cert = peerCertificate(socket);
  if (!cert) return null;
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest();
}

export function peerCertificatePem(socket: TLSSocket): string | null {
  const der = peerCertificate(socket)?.raw;
  if (!der) return null;
  const base64 = der.toString('base64').match(/.{1,64}/g)!.join('\n');
  return `-----BEGIN CERTIFICATE-----\n${base64}\n-----END CERTIFICATE-----\n`;
}

/** Formats HOST:PORT, bracketing IPv6 literals. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Parses HOST:PORT (IPv6 in brackets); returns null when it is not one. */
export function parseAddress(text: string): { host: string; port: number } | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text.trim());
  if (!match) return null;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (match[1] ?? match[2])!, port };
}
