import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { formatAddress, parseAddress } from './tls.js';

describe('parseAddress', () => {
  test('parses HOST:PORT for names, IPv4 and bracketed IPv6', () => {
    assert.deepEqual(parseAddress('shop-a.local:7420'), { host: 'shop-a.local', port: 7420 });
    assert.deepEqual(parseAddress('192.168.1.20:1'), { host: '192.168.1.20', port: 1 });
    assert.deepEqual(parseAddress('[::1]:7420'), { host: '::1', port: 7420 });
    assert.deepEqual(parseAddress('[fe80::1:2]:65535'), { host: 'fe80::1:2', port: 65535 });
    assert.deepEqual(parseAddress(' host:80 '), { host: 'host', port: 80 });
  });

  test('refuses ports out of range', () => {
    assert.equal(parseAddress('host:0'), null);
    assert.equal(parseAddress('host:65536'), null);
    assert.equal(parseAddress('host:70000'), null);
    assert.equal(parseAddress('host:123456'), null);
  });

  test('refuses a missing port and garbage', () => {
    for (const bad of ['host', 'host:', ':7420', '::1:7420', '[::1]', '[::1:7420', 'a b:80', 'host:80x', 'host:-1', '', 'http://host:80']) {
      assert.equal(parseAddress(bad), null, bad);
    }
  });
});

describe('formatAddress', () => {
  test('brackets IPv6 literals only', () => {
    assert.equal(formatAddress('::1', 7420), '[::1]:7420');
    assert.equal(formatAddress('10.0.0.1', 7420), '10.0.0.1:7420');
    assert.equal(formatAddress('shop-a', 1), 'shop-a:1');
  });

  test('parseAddress reads back what formatAddress writes', () => {
    for (const host of ['::1', 'fe80::abcd', '10.0.0.1', 'shop-a.local']) {
      assert.deepEqual(parseAddress(formatAddress(host, 7420)), { host, port: 7420 });
    }
  });
});
