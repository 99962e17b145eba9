import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnderstudyError } from '../errors.js';
import {
  generateIdentity,
  identityPaths,
  keyHashFromNodeId,
  loadIdentity,
  nodeIdFromCertificate,
  nodeIdFromKeyHash,
  publicKeyHash,
  saveIdentity,
} from './identity.js';

function tempHome(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-identity-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function isError(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof UnderstudyError, `expected an UnderstudyError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

describe('node identity', () => {
  test('the node id is four groups of 13 base32 characters derived from the certificate', async () => {
    const identity = await generateIdentity({ commonName: 'shop-a' });
    assert.match(identity.nodeId, /^[A-Z2-7]{13}(-[A-Z2-7]{13}){3}$/);
    assert.equal(nodeIdFromCertificate(identity.certPem), identity.nodeId);
    assert.deepEqual(keyHashFromNodeId(identity.nodeId), publicKeyHash(identity.certPem));
  });

  test('the node id is the hash of the private key’s public half', async () => {
    const identity = await generateIdentity({ commonName: 'shop-a' });
    const spki = createPublicKey(identity.keyPem).export({ type: 'spki', format: 'der' });
    assert.equal(nodeIdFromKeyHash(createHash('sha256').update(spki).digest()), identity.nodeId);
  });

  test('two identities have different ids', async () => {
    const [a, b] = await Promise.all([generateIdentity({ commonName: 'a' }), generateIdentity({ commonName: 'a' })]);
    assert.notEqual(a.nodeId, b.nodeId);
  });

  test('an expired certificate still parses and yields its node id', async () => {
    const identity = await generateIdentity({
      commonName: 'old',
      notBefore: new Date('2001-01-01T00:00:00Z'),
      notAfter: new Date('2002-01-01T00:00:00Z'),
    });
    const cert = new X509Certificate(identity.certPem);
    assert.ok(new Date(cert.validTo).getTime() < Date.now(), 'the certificate is expired');
    assert.equal(nodeIdFromCertificate(cert), identity.nodeId);
    assert.match(identity.nodeId, /^[A-Z2-7]{13}(-[A-Z2-7]{13}){3}$/);
  });

  test('saveIdentity writes a private key only its owner can read, and loadIdentity reads it back', async (t) => {
    const home = tempHome(t);
    const identity = await generateIdentity({ commonName: 'shop-a' });
    saveIdentity(home, identity);
    assert.equal(statSync(identityPaths(home).key).mode & 0o777, 0o600);
    assert.deepEqual(loadIdentity(home), identity);
  });

  test('saveIdentity refuses to overwrite an identity', async (t) => {
    const home = tempHome(t);
    const first = await generateIdentity({ commonName: 'a' });
    saveIdentity(home, first);
    const second = await generateIdentity({ commonName: 'b' });
    assert.throws(() => saveIdentity(home, second), isError('home-already-initialized'));
    assert.equal(readFileSync(identityPaths(home).key, 'utf8'), first.keyPem);
    assert.equal(loadIdentity(home).nodeId, first.nodeId);
  });

  test('loadIdentity on an empty home says it is not initialized', (t) => {
    const home = tempHome(t);
    assert.throws(() => loadIdentity(home), isError('home-not-initialized'));
  });
});
