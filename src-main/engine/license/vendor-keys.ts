/**
 * The vendor public keys this build trusts. The production key is built in; its private half
 * is kept by the vendor and never enters the repository. The throwaway test key
 * (test/fixtures/license/) is trusted only in development (UNDERSTUDY_DEV=1) and never from a
 * packaged app: the packaged files leave test/ out, and an app.asar path is refused outright.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { keyId } from './license-key.js';

const ProductionVendorKey = `-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAB7Jgveqm9CzUbaeHgyRJyQ9k7QZh59jJmS03bGxQ1GE=
-----END PUBLIC KEY-----`;

/** From dist/src-main/engine/license/ to the repository's test fixture. */
const DevVendorKeyPath = fileURLToPath(new URL('../../../../test/fixtures/license/vendor-test.pub.pem', import.meta.url));

export function isDevMode(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.UNDERSTUDY_DEV === '1';
}

function packaged(): boolean {
  return DevVendorKeyPath.includes('app.asar');
}

/** Key id -> public key, for readKey(). */
export function trustedVendorKeys(env: NodeJS.ProcessEnv = process.env): ReadonlyMap<string, KeyObject> {
  const keys = [createPublicKey(ProductionVendorKey)];
  if (isDevMode(env) && !packaged() && existsSync(DevVendorKeyPath)) keys.push(createPublicKey(readFileSync(DevVendorKeyPath)));
  return new Map(keys.map((key) => [keyId(key), key]));
}
