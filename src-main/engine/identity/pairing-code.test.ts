import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ManualClock } from '../clock.js';
import { UnderstudyError } from '../errors.js';
import {
  codeMatchesKey,
  DefaultPairingCodeTtlMs,
  formatPairingCode,
  PairingCodeBook,
  pairingProof,
  parsePairingCode,
  proofsEqual,
} from './pairing-code.js';

function isError(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof UnderstudyError, `expected an UnderstudyError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

/** A book with one fresh code, and that code's id as the joiner would parse it. */
function bookWithCode() {
  const clock = new ManualClock();
  const book = new PairingCodeBook(clock);
  const keyHash = randomBytes(32);
  const issued = book.issue(keyHash);
  const code = parsePairingCode(issued.text);
  return { clock, book, keyHash, issued, code };
}

/** A code id that was never issued by the book. */
function otherId(codeId: string): string {
  return codeId === '0000' ? '0001' : '0000';
}

describe('pairing code text', () => {
  const code = { keyPrefix: randomBytes(8), codeId: 'beef', secret: randomBytes(10) };

  test('formats as 8 groups of 4 and parses back', () => {
    const text = formatPairingCode(code);
    assert.match(text, /^[A-Z2-7]{4}(-[A-Z2-7]{4}){7}$/);
    assert.deepEqual(parsePairingCode(text), code);
  });

  test('parsing tolerates lower case, spaces and missing dashes', () => {
    const text = formatPairingCode(code);
    assert.deepEqual(parsePairingCode(text.toLowerCase()), code);
    assert.deepEqual(parsePairingCode(` ${text.replace(/-/g, ' ')} `), code);
    assert.deepEqual(parsePairingCode(text.replace(/-/g, '')), code);
  });

  test('garbage is refused with pair-code-invalid', () => {
    const text = formatPairingCode(code);
    for (const bad of ['', 'hello', text.slice(0, -1), `${text}A`, text.replace(/[A-Z]/, '1')]) {
      assert.throws(() => parsePairingCode(bad), isError('pair-code-invalid'), bad);
    }
  });
});

describe('PairingCodeBook', () => {
  test('a fresh code checks ok and yields the secret of the printed code', () => {
    const { book, code } = bookWithCode();
    const result = book.check(code.codeId);
    assert.ok(result.ok);
    assert.deepEqual(result.secret, code.secret);
    assert.equal(book.hasUsableCode(), true);
  });

  test('the printed expiry is ten minutes after issue', () => {
    const { clock, issued } = bookWithCode();
    assert.equal(issued.expiresAt.getTime() - clock.now().getTime(), DefaultPairingCodeTtlMs);
  });

  test('a code expires after ten minutes', () => {
    const { clock, book, code } = bookWithCode();
    clock.advance(DefaultPairingCodeTtlMs - 1);
    assert.equal(book.check(code.codeId).ok, true);
    clock.advance(1);
    assert.deepEqual(pick(book.check(code.codeId)), 'pair-code-expired');
    assert.equal(book.hasUsableCode(), false);
  });

  test('a consumed code is used', () => {
    const { book, code } = bookWithCode();
    book.consume(code.codeId);
    assert.equal(pick(book.check(code.codeId)), 'pair-code-used');
    assert.equal(book.hasUsableCode(), false);
  });

  test('an unknown code id is wrong', () => {
    const { book, code } = bookWithCode();
    assert.equal(pick(book.check(otherId(code.codeId))), 'pair-code-wrong');
  });

  test('repeated failures throttle every code until the lockout passes', () => {
    const { clock, book, code } = bookWithCode();
    const wrong = otherId(code.codeId);
    assert.equal(pick(book.check(wrong)), 'pair-code-wrong');
    assert.equal(pick(book.check(wrong)), 'pair-code-wrong');
    assert.equal(book.check(code.codeId).ok, true, 'two failures are free');
    assert.equal(pick(book.check(wrong)), 'pair-code-wrong');
    assert.equal(pick(book.check(code.codeId)), 'pair-throttled');
    assert.equal(pick(book.check(wrong)), 'pair-throttled');
    clock.advance(1000);
    assert.equal(book.check(code.codeId).ok, true);
    // The next failure locks out for longer (doubling).
    book.recordFailure();
    clock.advance(1000);
    assert.equal(pick(book.check(code.codeId)), 'pair-throttled');
    clock.advance(1000);
    assert.equal(book.check(code.codeId).ok, true);
  });

  test('the tenth failure revokes every outstanding code', () => {
    const { clock, book, code } = bookWithCode();
    for (let i = 0; i < 9; i++) book.recordFailure();
    clock.advance(60_000);
    assert.equal(book.check(code.codeId).ok, true, 'nine failures do not revoke');
    book.recordFailure();
    clock.advance(60_000);
    assert.equal(pick(book.check(code.codeId)), 'pair-code-wrong');
    assert.equal(book.hasUsableCode(), false);
  });

  test('issuing a new code ends the lockout', () => {
    const { book, keyHash, code } = bookWithCode();
    for (let i = 0; i < 3; i++) book.recordFailure();
    assert.equal(pick(book.check(code.codeId)), 'pair-throttled');
    const fresh = parsePairingCode(book.issue(keyHash).text);
    assert.equal(book.check(code.codeId).ok, true);
    assert.equal(book.check(fresh.codeId).ok, true);
    book.recordFailure();
    assert.equal(book.check(code.codeId).ok, true, 'the failure count starts over');
  });
});

describe('pairing proofs', () => {
  test('codeMatchesKey compares the code with the issuer key hash', () => {
    const { keyHash, code } = bookWithCode();
    assert.equal(codeMatchesKey(code, keyHash), true);
    assert.equal(codeMatchesKey(code, randomBytes(32)), false);
  });

  test('proofs differ per side, per nonce and per secret; proofsEqual compares them', () => {
    const secret = randomBytes(10);
    const t = { joinerKey: randomBytes(32), issuerKey: randomBytes(32), joinerNonce: randomBytes(32), issuerNonce: randomBytes(32) };
    const joiner = pairingProof(secret, 'joiner', t);
    const issuer = pairingProof(secret, 'issuer', t);
    assert.notEqual(joiner, issuer);
    assert.notEqual(joiner, pairingProof(secret, 'joiner', { ...t, joinerNonce: randomBytes(32) }));
    assert.notEqual(joiner, pairingProof(secret, 'joiner', { ...t, issuerNonce: randomBytes(32) }));
    assert.notEqual(joiner, pairingProof(randomBytes(10), 'joiner', t));
    assert.equal(joiner, pairingProof(Buffer.from(secret), 'joiner', { ...t }), 'a proof is deterministic');
    assert.equal(proofsEqual(joiner, pairingProof(secret, 'joiner', t)), true);
    assert.equal(proofsEqual(joiner, issuer), false);
    assert.equal(proofsEqual(joiner, 'c2hvcnQ='), false);
  });
});

function pick(result: ReturnType<PairingCodeBook['check']>): string {
  return result.ok ? 'ok' : result.code;
}
