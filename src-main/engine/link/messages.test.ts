import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { nodeIdFromKeyHash } from '../identity/identity.js';
import { BeatMessageSchema, LinkMessageSchema, PairMessageSchema, parseMessage } from './messages.js';

const nodeId = nodeIdFromKeyHash(randomBytes(32));
const nonce = randomBytes(32).toString('base64'); // 44 characters
const none = Buffer.alloc(0);

function refused(result: { ok: boolean; reason?: string }): string {
  assert.equal(result.ok, false);
  assert.equal(typeof result.reason, 'string');
  assert.ok(result.reason!.length > 0);
  return result.reason!;
}

describe('parseMessage', () => {
  test('accepts valid heartbeat messages', () => {
    for (const header of [{ t: 'hb.hello', nodeId }, { t: 'ping', seq: 0, epoch: 0 }, { t: 'pong', seq: 42, epoch: 3 }]) {
      const result = parseMessage(BeatMessageSchema, header, none);
      assert.deepEqual(result, { ok: true, message: header });
    }
  });

  test('accepts a valid link hello', () => {
    const hello = { t: 'hello', nodeId, name: 'shop-a', role: 'primary', epoch: 2, position: { epoch: 2, seq: 10 } };
    assert.deepEqual(parseMessage(LinkMessageSchema, hello, none), { ok: true, message: hello });
  });

  test('accepts valid pairing messages', () => {
    const valid = [
      { t: 'pair.hello', codeId: '0a1f', nodeId, name: 'shop-b', listen: { host: '10.0.0.2', port: 7420 }, nonce },
      { t: 'pair.challenge', nodeId, name: 'shop-a', nonce },
      { t: 'pair.proof', mac: nonce },
      { t: 'pair.accepted', mac: nonce, epoch: 1 },
      { t: 'pair.commit' },
      { t: 'pair.refused', code: 'pair-code-wrong', message: 'the pairing code is wrong' },
    ];
    for (const header of valid) assert.deepEqual(parseMessage(PairMessageSchema, header, none), { ok: true, message: header });
  });

  test('progress with stages, throughput and pause; and without them, from an earlier primary', () => {
    const progress = { t: 'folder.progress', epoch: 1, objectId: 'f-0123456789', state: 'paused', lagMs: 900, pending: 3 };
    assert.deepEqual(parseMessage(LinkMessageSchema, progress, none), { ok: true, message: progress });
    const full = {
      ...progress,
      stages: { capture: { lagMs: 0, changes: 0 }, send: { lagMs: 900, changes: 3 }, apply: { lagMs: 0, changes: 0 } },
      throughput: { bytesPerSec: 1024, changesPerSec: 0.5 },
      paused: true,
    };
    assert.deepEqual(parseMessage(LinkMessageSchema, full, none), { ok: true, message: full });
    refused(parseMessage(LinkMessageSchema, { ...full, stages: { ...full.stages, send: { lagMs: -1, changes: 3 } } }, none));
    const rehash = { t: 'sqlite.rehash', epoch: 1, objectId: 'd-0123456789' };
    assert.deepEqual(parseMessage(LinkMessageSchema, rehash, none), { ok: true, message: rehash });
  });

  test('refuses fields of the wrong type, naming the field', () => {
    assert.match(refused(parseMessage(BeatMessageSchema, { t: 'ping', seq: '1', epoch: 0 }, none)), /seq/);
    assert.match(refused(parseMessage(BeatMessageSchema, { t: 'ping', seq: 1.5, epoch: 0 }, none)), /seq/);
    assert.match(refused(parseMessage(BeatMessageSchema, { t: 'pong', seq: 1, epoch: -1 }, none)), /epoch/);
  });

  test('refuses an unknown message type and a message of another channel', () => {
    refused(parseMessage(BeatMessageSchema, { t: 'reboot' }, none));
    refused(parseMessage(BeatMessageSchema, { t: 'pair.commit' }, none));
    refused(parseMessage(BeatMessageSchema, 'ping', none));
    refused(parseMessage(BeatMessageSchema, null, none));
  });

  test('refuses a bad node id', () => {
    for (const bad of [nodeId.toLowerCase(), nodeId.replace(/-/g, ''), `1${nodeId.slice(1)}`, `${nodeId}-ABCDEFGHIJKLM`]) {
      assert.match(refused(parseMessage(BeatMessageSchema, { t: 'hb.hello', nodeId: bad }, none)), /nodeId/);
    }
  });

  test('refuses missing fields', () => {
    assert.match(refused(parseMessage(BeatMessageSchema, { t: 'ping', seq: 1 }, none)), /epoch/);
    assert.match(refused(parseMessage(PairMessageSchema, { t: 'pair.challenge', nodeId, name: 'a' }, none)), /nonce/);
    const hello = { t: 'hello', nodeId, name: 'a', role: 'primary', epoch: 0 };
    assert.match(refused(parseMessage(LinkMessageSchema, hello, none)), /position/);
  });

  test('refuses bad pairing values', () => {
    const hello = { t: 'pair.hello', codeId: '0a1f', nodeId, name: 'b', listen: { host: 'h', port: 7420 }, nonce };
    refused(parseMessage(PairMessageSchema, { ...hello, codeId: '0A1F' }, none));
    refused(parseMessage(PairMessageSchema, { ...hello, listen: { host: 'h', port: 0 } }, none));
    refused(parseMessage(PairMessageSchema, { ...hello, nonce: nonce.slice(1) }, none));
    refused(parseMessage(PairMessageSchema, { ...hello, name: '' }, none));
    refused(parseMessage(LinkMessageSchema, { t: 'hello', nodeId, name: 'a', role: 'boss', epoch: 0, position: { epoch: 0, seq: 0 } }, none));
  });

  test('refuses a body on a message that takes none', () => {
    const reason = refused(parseMessage(BeatMessageSchema, { t: 'ping', seq: 1, epoch: 0 }, Buffer.from('x')));
    assert.match(reason, /body/);
  });
});
