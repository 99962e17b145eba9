/**
 * A node's identity: an ECDSA P-256 key pair, a long-lived self-signed certificate for
 * TLS, and the node id derived from the public key. Peers pin the public key, never the
 * certificate's dates, so a working pair does not break when a date passes.
 */
import 'reflect-metadata';
import { createHash, webcrypto, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { base32Decode, base32Encode } from './base32.js';
import { UnderstudyError } from '../errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const KeyAlgorithm = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SigningAlgorithm = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Certificates are valid for a century; trust does not depend on it (see pinning). */
const CertificateYears = 100;

export interface Identity {
  nodeId: string;
  certPem: string;
  keyPem: string;
}

export interface CertificateOptions {
  commonName: string;
  notBefore?: Date;
  notAfter?: Date;
}

/** Makes a fresh key pair and self-signed certificate (also used by tests for strangers). */
export async function generateIdentity(options: CertificateOptions): Promise<Identity> {
  const keys = (await webcrypto.subtle.generateKey(KeyAlgorithm, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const notBefore = options.notBefore ?? new Date(Date.now() - 24 * 3600 * 1000);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + CertificateYears * 365.25 * 24 * 3600 * 1000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16))).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=${escapeDn(options.commonName)}`,
    notBefore,
    notAfter,
    signingAlgorithm: SigningAlgorithm,
    keys,
    extensions: [new x509.BasicConstraintsExtension(false, undefined, true)],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
  const certPem = cert.toString('pem');
  return { nodeId: nodeIdFromCertificate(certPem), certPem, keyPem };
}

function escapeDn(value: string): string {
  return value.replace(/[,+"\\<>;=]/g, (c) => `\\${c}`);
}

/** SHA-256 of the certificate's public key (SubjectPublicKeyInfo, DER). */
export function publicKeyHash(cert: X509Certificate | string): Buffer {
  const parsed = typeof cert === 'string' ? new X509Certificate(cert) : cert;
  const spki = parsed.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest();
}

/** The node id: the public key hash in base32, in four groups of 13 for reading aloud. */
export function nodeIdFromKeyHash(hash: Buffer): string {
  const text = base32Encode(hash); // 52 characters
  return [0, 13, 26, 39].map((i) => text.slice(i, i + 13)).join('-');
}

/** The public key hash back from a node id (the id is that hash in base32). */
export function keyHashFromNodeId(nodeId: string): Buffer {
  return base32Decode(nodeId.replace(/-/g, ''))!.subarray(0, 32);
}

export function nodeIdFromCertificate(cert: X509Certificate | string): string {
  return nodeIdFromKeyHash(publicKeyHash(cert));
}

/** A short form of a node id for logs and tables. */
export function shortNodeId(nodeId: string): string {
  return nodeId.slice(0, 7);
}

const IdentityDir = 'identity';

export function identityPaths(home: string): { dir: string; key: string; cert: string } {
  const dir = join(home, IdentityDir);
  return { dir, key: join(dir, 'node-key.pem'), cert: join(dir, 'node-cert.pem') };
}

/** Writes a new identity into a home; refuses to overwrite one that exists. */
export function saveIdentity(home: string, identity: Identity): void {
  const paths = identityPaths(home);
  if (existsSync(paths.key) || existsSync(paths.cert)) {
    throw new UnderstudyError('home-already-initialized', `${home} already holds a node identity`, {
      hint: 'use another --home, or keep this node',
    });
  }
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  writeFileSync(paths.key, identity.keyPem, { mode: 0o600, flag: 'wx' });
  chmodSync(paths.key, 0o600);
  writeFileSync(paths.cert, identity.certPem, { mode: 0o644, flag: 'wx' });
}

export function loadIdentity(home: string): Identity {
  const paths = identityPaths(home);
  try {
    const keyPem = readFileSync(paths.key, 'utf8');
    const certPem = readFileSync(paths.cert, 'utf8');
    return { nodeId: nodeIdFromCertificate(certPem), keyPem, certPem };
  } catch (error) {
    throw new UnderstudyError('home-not-initialized', `no node identity in ${home}`, {
      hint: `run 'understudy init --home ${home} --name NAME' first`,
      cause: error,
    });
  }
}
