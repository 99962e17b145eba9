import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../store/store.js';
import { reachableAddresses, readSetup, saveSetup } from './setup-state.js';

const listen = { host: '127.0.0.1', port: 7420 };
const store = () => Store.open(mkdtempSync(join(tmpdir(), 'setup-')));

describe('setup state', () => {
  test('a fresh node starts the wizard; a node paired from the CLI needs none', () => {
    assert.deepEqual(readSetup(store(), 'standalone', listen), { step: 0, role: null, done: false, addresses: ['127.0.0.1:7420'] });
    assert.equal(readSetup(store(), 'primary', listen).done, true);
  });

  test('the step and role are kept by the node, so another window resumes them; becoming primary does not end the wizard', () => {
    const s = store();
    saveSetup(s, 'standalone', listen, { step: 2, role: 'production' });
    assert.deepEqual(readSetup(s, 'primary', listen), { step: 2, role: 'production', done: false, addresses: ['127.0.0.1:7420'] });
    assert.equal(saveSetup(s, 'primary', listen, { done: true }).done, true);
    assert.equal(readSetup(s, 'primary', listen).step, 2);
  });

  test('a step that does not exist is refused in one line', () => {
    assert.throws(() => saveSetup(store(), 'standalone', listen, { step: 9 }), /setup step 9 does not exist/);
  });

  test('a node listening on every interface is reached on each of its addresses, loopback last', () => {
    const addresses = reachableAddresses({ host: '0.0.0.0', port: 7420 });
    assert.equal(addresses.at(-1), '127.0.0.1:7420');
    assert.ok(addresses.every((a) => a.endsWith(':7420')));
  });
});
