import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { UnderstudyError } from '../errors.js';
import { issueKey, keyId, readKey, type IssueRequest } from './license-key.js';
import { trustedVendorKeys } from './vendor-keys.js';

const TestVendorPem = readFileSync(new URL('../../../../test/fixtures/license/vendor-test.pem', import.meta.url), 'utf8');
const trusted = new Map([[keyId(createPublicKey(TestVendorPem)), createPublicKey(TestVendorPem)]]);
const Day = 86_400_000;
const Issued = Date.UTC(2026, 10, 1);
const Request: IssueRequest = { customer: 'Acme Hardware', tier: 'P10', nodes: 2, issuedAt: Issued, expiresAt: Issued + 365 * Day, maintenanceEndsAt: null };

function rejects(text: string, pattern: RegExp, keys: ReadonlyMap<string, KeyObject> = trusted): void {
  assert.throws(
    () => readKey(text, keys),
    (error: unknown) => error instanceof UnderstudyError && error.code === 'license-invalid' && pattern.test(error.toLine()) && !error.toLine().includes('\n'),
  );
}

/** The key with the character at `index` replaced by another of the same alphabet. */
function withCharChanged(key: string, index: number): string {
  const replacement = key[index] === 'A' ? 'B' : 'A';
  return key.slice(0, index) + replacement + key.slice(index + 1);
}

describe('license keys', () => {
  test('a key issued with the vendor key reads back with its terms, also when pasted with line breaks', () => {
    const key = issueKey(TestVendorPem, Request);
    assert.match(key, /^US1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.ok(key.length < 320, `a key to copy and paste, not a file (${key.length} characters)`);
    const terms = readKey(key, trusted);
    assert.equal(terms.customer, 'Acme Hardware');
    assert.equal(terms.tier, 'P10');
    assert.equal(terms.nodes, 2);
    assert.equal(terms.issuedAt, Issued);
    assert.equal(terms.expiresAt, Issued + 365 * Day);
    assert.equal(terms.maintenanceEndsAt, null);
    const wrapped = `  ${key.slice(0, 60)}\n${key.slice(60, 130)}\r\n ${key.slice(130)}\n`;
    assert.deepEqual(readKey(wrapped, trusted), terms);
  });

  test('a perpetual key carries its end of maintenance and no expiry', () => {
    const terms = readKey(issueKey(TestVendorPem, { ...Request, expiresAt: null, maintenanceEndsAt: Issued + 365 * Day }), trusted);
    assert.equal(terms.expiresAt, null);
    assert.equal(terms.maintenanceEndsAt, Issued + 365 * Day);
  });

  test('every single changed character is refused, wherever it is', () => {
    const key = issueKey(TestVendorPem, Request);
    for (let i = 'US1.'.length; i < key.length; i++) {
      if (key[i] === '.') continue;
      assert.throws(() => readKey(withCharChanged(key, i), trusted), UnderstudyError, `a change at character ${i} went unnoticed`);
    }
    rejects(withCharChanged(key, key.length - 1), /does not match its signature|incomplete or damaged/);
  });

  test('a key signed by another key is refused as not issued by Understudy', () => {
    const other = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    rejects(issueKey(other, Request), /not signed by Understudy/);
  });

  test('truncated keys and garbage are refused, each with one line saying what is wrong', () => {
    const key = issueKey(TestVendorPem, Request);
    for (const cut of [key.length - 1, key.length - 20, key.indexOf('.', 4) + 1, key.indexOf('.', 4), 40, 5]) {
      rejects(key.slice(0, cut), /incomplete or damaged/);
    }
    rejects('', /not an Understudy license key/);
    rejects('hello world', /not an Understudy license key/);
    rejects('US1.!!!!.????', /incomplete or damaged/);
    rejects(`US1.${Buffer.from('{"v":1}').toString('base64url')}.${Buffer.alloc(64).toString('base64url')}`, /incomplete or damaged/);
  });

  test('the test vendor key is trusted only in development', () => {
    const key = issueKey(TestVendorPem, Request);
    assert.equal(readKey(key, trustedVendorKeys({ UNDERSTUDY_DEV: '1' })).customer, 'Acme Hardware');
    rejects(key, /not signed by Understudy/, trustedVendorKeys({}));
  });

  test('issuing refuses a vendor key that is not an Ed25519 private key', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    assert.throws(() => issueKey(rsa, Request), /not Ed25519/);
    assert.throws(() => issueKey('not a pem', Request), /not a private key/);
  });
});
