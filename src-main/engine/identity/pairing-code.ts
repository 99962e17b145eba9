/**
 * One-time pairing codes. A code carries three things: the first bytes of the issuing
 * node's public key hash (so the joining node can tell it reached the right machine before
 * it says anything), a code id (so the issuer can say "expired" or "already used" rather
 * than just "wrong"), and a secret that only ever enters a MAC, never the wire.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { base32Decode, base32Encode } from './base32.js';
import type { Clock } from '../clock.js';
import { UnderstudyError, type ErrorCode } from '../errors.js';

const KeyPrefixBytes = 8;
const CodeIdBytes = 2;
const SecretBytes = 10;
const CodeBytes = KeyPrefixBytes + CodeIdBytes + SecretBytes; // 20 bytes = 32 base32 characters

/** How long a code may be used after it is printed. @default 10 minutes */
export const DefaultPairingCodeTtlMs = 10 * 60 * 1000;
/** Wrong codes allowed before each further attempt waits (doubling, up to MaxLockoutMs). */
const FreeFailures = 2;
const MaxLockoutMs = 60_000;
/** After this many wrong codes every outstanding code is revoked. */
const RevokeAfterFailures = 10;

export interface PairingCode {
  keyPrefix: Buffer;
  codeId: string;
  secret: Buffer;
}

export function formatPairingCode(code: PairingCode): string {
  const bytes = Buffer.concat([code.keyPrefix, Buffer.from(code.codeId, 'hex'), code.secret]);
  return base32Encode(bytes).match(/.{4}/g)!.join('-');
}

/** Parses a code as typed by a person: any case, with or without dashes and spaces. */
export function parsePairingCode(text: string): PairingCode {
  const compact = text.replace(/[\s-]/g, '');
  const bytes = compact.length === 32 ? base32Decode(compact) : null;
  if (!bytes || bytes.length !== CodeBytes) {
    throw new UnderstudyError('pair-code-invalid', 'that is not a pairing code (expected 32 letters and digits in groups of 4)', {
      hint: "copy the code exactly as 'understudy pair-code' printed it",
    });
  }
  return {
    keyPrefix: bytes.subarray(0, KeyPrefixBytes),
    codeId: bytes.subarray(KeyPrefixBytes, KeyPrefixBytes + CodeIdBytes).toString('hex'),
    secret: bytes.subarray(KeyPrefixBytes + CodeIdBytes),
  };
}

export function codeMatchesKey(code: PairingCode, keyHash: Buffer): boolean {
  return timingSafeEqual(code.keyPrefix, keyHash.subarray(0, KeyPrefixBytes));
}

export type ProofSide = 'joiner' | 'issuer';

/** The MAC each side sends to show it holds the code's secret, bound to both keys and both nonces. */
export function pairingProof(
  secret: Buffer,
  side: ProofSide,
  t: { joinerKey: Buffer; issuerKey: Buffer; joinerNonce: Buffer; issuerNonce: Buffer },
): string {
  return createHmac('sha256', secret)
    .update(`understudy-pair-v1|${side}|`)
    .update(t.joinerKey)
    .update(t.issuerKey)
    .update(t.joinerNonce)
    .update(t.issuerNonce)
    .digest('base64');
}

export function proofsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'base64');
  const y = Buffer.from(b, 'base64');
  return x.length === y.length && timingSafeEqual(x, y);
}

interface IssuedCode {
  secret: Buffer;
  expiresAtMs: number;
  usedAtMs: number | null;
  revoked: boolean;
}

export type CodeCheck =
  | { ok: true; secret: Buffer }
  | { ok: false; code: ErrorCode; message: string };

/**
 * The issuer's book of codes, in memory only: a restart voids every outstanding code,
 * which is the safe direction. Wrong codes are throttled across all codes at once.
 */
export class PairingCodeBook {
  private readonly codes = new Map<string, IssuedCode>();
  private failures = 0;
  private lockedUntilMs = 0;

  constructor(
    private readonly clock: Clock,
    private readonly ttlMs = DefaultPairingCodeTtlMs,
  ) {}

  /** Issues a new code for the node whose public key hash is given. */
  issue(keyHash: Buffer): { text: string; expiresAt: Date } {
    let codeId: string;
    do codeId = randomBytes(CodeIdBytes).toString('hex');
    while (this.codes.has(codeId));
    const secret = randomBytes(SecretBytes);
    const now = this.clock.monotonicMs();
    this.codes.set(codeId, { secret, expiresAtMs: now + this.ttlMs, usedAtMs: null, revoked: false });
    // A fresh code from the admin ends any lockout: only the admin can issue codes.
    this.failures = 0;
    this.lockedUntilMs = 0;
    const text = formatPairingCode({ keyPrefix: keyHash.subarray(0, KeyPrefixBytes), codeId, secret });
    return { text, expiresAt: new Date(this.clock.now().getTime() + this.ttlMs) };
  }

  /** True while some code could still be used: only then are unknown keys let in to pair. */
  hasUsableCode(): boolean {
    const now = this.clock.monotonicMs();
    for (const code of this.codes.values()) {
      if (!code.revoked && code.usedAtMs === null && now < code.expiresAtMs) return true;
    }
    return false;
  }

  /** True once any code was issued since this node started: only then is a pairing hello read at all. */
  hasIssuedAny(): boolean {
    return this.codes.size > 0;
  }

  /** Checks whether a pairing attempt with this code id may go on, before its proof is seen. */
  check(codeId: string): CodeCheck {
    const now = this.clock.monotonicMs();
    if (now < this.lockedUntilMs) {
      const seconds = Math.ceil((this.lockedUntilMs - now) / 1000);
      return { ok: false, code: 'pair-throttled', message: `too many wrong pairing codes; try again in ${seconds} s` };
    }
    const code = this.codes.get(codeId);
    if (!code || code.revoked) {
      this.recordFailure();
      return { ok: false, code: 'pair-code-wrong', message: 'the pairing code is wrong' };
    }
    if (code.usedAtMs !== null) return { ok: false, code: 'pair-code-used', message: 'the pairing code was already used' };
    if (now >= code.expiresAtMs) return { ok: false, code: 'pair-code-expired', message: 'the pairing code has expired' };
    return { ok: true, secret: code.secret };
  }

  /** Records a proof that did not match: a wrong secret. */
  recordFailure(): void {
    this.failures += 1;
    if (this.failures > FreeFailures) {
      const lockout = Math.min(1000 * 2 ** (this.failures - FreeFailures - 1), MaxLockoutMs);
      this.lockedUntilMs = this.clock.monotonicMs() + lockout;
    }
    if (this.failures >= RevokeAfterFailures) for (const code of this.codes.values()) code.revoked = true;
  }

  /** Marks a code used; a used code never works again. */
  consume(codeId: string): void {
    const code = this.codes.get(codeId);
    if (code) code.usedAtMs = this.clock.monotonicMs();
  }
}
