/**
 * The data link's reconnection rules, between two real PeerLinks over mutual TLS on loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { generateIdentity, publicKeyHash, type Identity } from '../identity/identity.js';
import type { PeerRecord } from '../store/store.js';
import { dialsPeer, PeerLinks, type Hello } from './peer-link.js';
import { Alpn, serverTlsOptions } from './tls.js';

const log = pino({ level: 'silent' });

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function hello(identity: Identity, role: 'primary' | 'backup'): () => Hello {
  return () => ({ t: 'hello', nodeId: identity.nodeId, name: role, role, epoch: 1, position: { epoch: 1, seq: 0 } });
}

function record(identity: Identity, role: 'primary' | 'backup', port: number): PeerRecord {
  return { id: identity.nodeId, name: role, role, keyHash: publicKeyHash(identity.certPem), certPem: identity.certPem, host: '127.0.0.1', port, pairedAt: new Date().toISOString() };
}

describe('PeerLinks', () => {
  let dialer: Identity;
  let listener: Identity;
  let server: Server;
  let port = 0;
  let accepted = 0;
  let dialerLinks: PeerLinks;
  let listenerLinks: PeerLinks;

  before(async () => {
    const [one, two] = await Promise.all([generateIdentity({ commonName: 'one' }), generateIdentity({ commonName: 'two' })]);
    // The lower id dials.
    [dialer, listener] = dialsPeer(one.nodeId, two.nodeId) ? [one, two] : [two, one];
    listenerLinks = new PeerLinks(listener, hello(listener, 'backup'), log);
    server = createServer(serverTlsOptions(listener, [Alpn.link]), (socket) => {
      accepted += 1;
      listenerLinks.accept(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
    listenerLinks.setPeers([record(dialer, 'primary', 1)]);
    dialerLinks = new PeerLinks(dialer, hello(dialer, 'primary'), log);
  });

  after(async () => {
    dialerLinks.stop();
    listenerLinks.stop();
    await new Promise((resolve) => server.close(resolve));
  });

  test('a peer dropped by setPeers is not dialed again; added back, it gets one stable link', async () => {
    const peer = record(listener, 'backup', port);
    dialerLinks.setPeers([peer]);
    for (let i = 0; i < 100 && !dialerLinks.isConnected(listener.nodeId); i++) await sleep(20);
    assert.ok(dialerLinks.isConnected(listener.nodeId), 'connected at first');
    assert.equal(accepted, 1);

    // A primary that may not act drops its link to the backup (node.applyPeers does this).
    dialerLinks.setPeers([]);
    await sleep(1500);
    assert.equal(accepted, 1, 'the dropped link must not dial again (it did: an orphaned link keeps reconnecting)');

    // Acting again: the peer comes back, and exactly one link to it holds.
    let churn = 0;
    const onConnected = () => (churn += 1);
    listenerLinks.on('connected', onConnected);
    dialerLinks.setPeers([peer]);
    await sleep(1500);
    listenerLinks.off('connected', onConnected);
    assert.ok(dialerLinks.isConnected(listener.nodeId), 'connected again');
    assert.equal(churn, 1, `one connection after the peer came back, not a fight between two links (${churn} connections)`);
  });
});
