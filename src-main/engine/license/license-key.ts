/**
 * License keys: a signed, copy-and-paste text. `US1.` + base64url(JSON terms) + `.` +
 * base64url(Ed25519 signature). The terms name the vendor key that signed them (its id), so
 * a key signed by anyone else is told apart from one that was altered. Verified offline.
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import * as v from 'valibot';
import { UnderstudyError } from '../errors.js';

const Prefix = 'US1.';
/** Signed together with the terms, so a signature made for anything else never verifies here. */
const SignedContext = 'understudy-license-1.';
const Base64UrlPattern = /^[A-Za-z0-9_-]+$/;
const Seconds = v.pipe(v.number(), v.integer(), v.minValue(0));

const TermsSchema = v.object({
  v: v.literal(1),
  /** Which vendor key signed (keyId()). */
  kid: v.pipe(v.string(), v.regex(/^[0-9a-f]{16}$/)),
  id: v.pipe(v.string(), v.regex(/^[0-9a-f]{8}$/)),
  cu: v.pipe(v.string(), v.minLength(1), v.maxLength(100)),
  ti: v.pipe(v.string(), v.regex(/^P\d\d$/)),
  n: v.pipe(v.number(), v.integer(), v.minValue(2), v.maxValue(64)),
  is: Seconds,
  /** Expiry; null: perpetual. */
  ex: v.nullable(Seconds),
  /** End of maintenance (updates) for a perpetual license; null for a term license. */
  mx: v.nullable(Seconds),
});
type Terms = v.InferOutput<typeof TermsSchema>;

/** What a verified key grants. Times in ms since the epoch. */
export interface LicenseTerms {
  licenseId: string;
  keyId: string;
  customer: string;
  tier: string;
  nodes: number;
  issuedAt: number;
  /** null: perpetual. */
  expiresAt: number | null;
  maintenanceEndsAt: number | null;
}

/** What the vendor signs: the terms but their ids (the license id is drawn, the key id is the signing key's). */
export type IssueRequest = Omit<LicenseTerms, 'licenseId' | 'keyId'>;

/** The id of a vendor key: the first 8 bytes of the SHA-256 of its public key (SPKI DER), in hex. */
export function keyId(key: KeyObject): string {
  const spki = (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('hex').slice(0, 16);
}

/** Signs terms with the vendor's private key (PEM): the vendor side of `license issue`. */
export function issueKey(privateKeyPem: string, request: IssueRequest): string {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (error) {
    throw new UnderstudyError('license-invalid', 'the vendor key is not a private key in PEM form', { hint: 'give the Ed25519 private key (.pem) the licenses are signed with', cause: error });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new UnderstudyError('license-invalid', `the vendor key is ${key.asymmetricKeyType ?? 'of an unknown type'}, not Ed25519`, { hint: 'license keys are signed with Ed25519' });
  const terms: Terms = {
    v: 1,
    kid: keyId(key),
    id: randomBytes(4).toString('hex'),
    cu: request.customer,
    ti: request.tier,
    n: request.nodes,
    is: Math.floor(request.issuedAt / 1000),
    ex: request.expiresAt === null ? null : Math.floor(request.expiresAt / 1000),
    mx: request.maintenanceEndsAt === null ? null : Math.floor(request.maintenanceEndsAt / 1000),
  };
  const body = Buffer.from(JSON.stringify(v.parse(TermsSchema, terms))).toString('base64url');
  const signature = sign(null, Buffer.from(SignedContext + body), key).toString('base64url');
  return `${Prefix}${body}.${signature}`;
}

/** Keys are pasted from mails and chats: line breaks and spaces are not part of a key. */
export function normalizeKey(text: string): string {
  return text.replace(/\s+/g, '');
}

/**
 * Checks a key against the trusted vendor keys (id -> public key) and returns its terms, or
 * throws one clear UnderstudyError ('license-invalid') saying what is wrong with it.
 */
export function readKey(text: string, trusted: ReadonlyMap<string, KeyObject>): LicenseTerms {
  const key = normalizeKey(text);
  if (!key.startsWith(Prefix)) {
    throw new UnderstudyError('license-invalid', `this is not an Understudy license key (a key starts with '${Prefix}')`, { hint: 'paste the whole key from your license mail' });
  }
  const parts = key.slice(Prefix.length).split('.');
  const incomplete = () =>
    new UnderstudyError('license-invalid', `the license key is incomplete or damaged (${key.length} characters; was it cut off when copied?)`, {
      hint: `paste the whole key, from '${Prefix}' to its last character`,
    });
  if (parts.length !== 2 || !parts.every((part) => Base64UrlPattern.test(part))) throw incomplete();
  const [body, signatureText] = parts as [string, string];
  const signature = Buffer.from(signatureText, 'base64url');
  // A changed last character can leave the decoded bytes as they were: only the exact encoding counts.
  if (signature.length !== 64 || signature.toString('base64url') !== signatureText) throw incomplete();
  let terms: Terms;
  try {
    terms = v.parse(TermsSchema, JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
  } catch {
    throw incomplete();
  }
  if (Buffer.from(body, 'base64url').toString('base64url') !== body) throw altered();
  const vendorKey = trusted.get(terms.kid);
  if (!vendorKey) {
    throw new UnderstudyError('license-invalid', `the license key was not signed by Understudy (it names the signing key ${terms.kid}, which this build does not trust)`, {
      hint: 'use a key issued by Understudy or your reseller',
    });
  }
  if (!verify(null, Buffer.from(SignedContext + body), vendorKey, signature)) throw altered();
  return {
    licenseId: terms.id,
    keyId: terms.kid,
    customer: terms.cu,
    tier: terms.ti,
    nodes: terms.n,
    issuedAt: terms.is * 1000,
    expiresAt: terms.ex === null ? null : terms.ex * 1000,
    maintenanceEndsAt: terms.mx === null ? null : terms.mx * 1000,
  };
}

function altered(): UnderstudyError {
  return new UnderstudyError('license-invalid', 'the license key does not match its signature: a character was changed or mistyped', {
    hint: 'paste the key again exactly as it was issued',
  });
}
