import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { base32Decode, base32Encode } from './base32.js';

// RFC 4648 section 10, without the padding.
const vectors: [string, string][] = [
  ['', ''],
  ['f', 'MY'],
  ['fo', 'MZXQ'],
  ['foo', 'MZXW6'],
  ['foob', 'MZXW6YQ'],
  ['fooba', 'MZXW6YTB'],
  ['foobar', 'MZXW6YTBOI'],
];

describe('base32', () => {
  test('encodes the RFC 4648 test vectors', () => {
    for (const [plain, encoded] of vectors) assert.equal(base32Encode(Buffer.from(plain)), encoded, plain);
  });

  test('decodes the RFC 4648 test vectors, in any case', () => {
    for (const [plain, encoded] of vectors) {
      assert.equal(base32Decode(encoded)?.toString(), plain, encoded);
      assert.equal(base32Decode(encoded.toLowerCase())?.toString(), plain, encoded);
    }
  });

  test('round-trips random bytes of every length up to 40', () => {
    for (let length = 0; length <= 40; length++) {
      const bytes = randomBytes(length);
      assert.deepEqual(base32Decode(base32Encode(bytes)), bytes);
    }
  });

  test('decoding a character outside the alphabet gives null', () => {
    for (const bad of ['MZXW6YTB0I', 'MZXW1', 'MY======', 'MZ XW', 'MZ-XW', 'É']) assert.equal(base32Decode(bad), null, bad);
  });
});
