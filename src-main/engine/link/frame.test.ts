import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeFrame, FrameError, FrameReader, ProtocolVersion, type FrameErrorReason } from './frame.js';

function expectFrameError(reason: FrameErrorReason): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof FrameError, `expected a FrameError, got ${String(error)}`);
    assert.equal(error.reason, reason);
    return true;
  };
}

/** A frame assembled by hand: length | version | header length | header bytes | body. */
function rawFrame(opts: { version?: number; headerLength?: number; header: Buffer; body?: Buffer }): Buffer {
  const body = opts.body ?? Buffer.alloc(0);
  const fixed = Buffer.alloc(9);
  fixed.writeUInt32BE(5 + opts.header.length + body.length, 0);
  fixed.writeUInt8(opts.version ?? ProtocolVersion, 4);
  fixed.writeUInt32BE(opts.headerLength ?? opts.header.length, 5);
  return Buffer.concat([fixed, opts.header, body]);
}

describe('FrameReader and encodeFrame', () => {
  const messages = [{ t: 'ping', seq: 1 }, { t: 'hello', name: 'ünïcode ✓' }, [1, 2, 3], null, 'text'];
  const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));

  test('several frames delivered in one chunk come back in order', () => {
    const reader = new FrameReader(1024);
    const frames = reader.push(stream);
    assert.deepEqual(
      frames.map((f) => f.header),
      messages,
    );
    for (const frame of frames) assert.equal(frame.body.length, 0);
    assert.equal(reader.pendingBytes, 0);
  });

  test('several frames delivered byte by byte come back in order', () => {
    const reader = new FrameReader(1024);
    const headers: unknown[] = [];
    for (let i = 0; i < stream.length; i++) {
      for (const frame of reader.push(stream.subarray(i, i + 1))) headers.push(frame.header);
    }
    assert.deepEqual(headers, messages);
    assert.equal(reader.pendingBytes, 0);
  });

  test('a frame with a body keeps header and body apart', () => {
    const body = Buffer.from([0, 1, 2, 255, 0x7b, 0x7d]);
    const reader = new FrameReader(1024);
    const frames = reader.push(Buffer.concat([encodeFrame({ t: 'block', n: 7 }, body), encodeFrame({ t: 'end' })]));
    assert.equal(frames.length, 2);
    assert.deepEqual(frames[0]!.header, { t: 'block', n: 7 });
    assert.deepEqual(frames[0]!.body, body);
    assert.deepEqual(frames[1]!.header, { t: 'end' });
    assert.equal(frames[1]!.body.length, 0);
  });

  test('an oversized length is refused from the 4-byte length alone', () => {
    const reader = new FrameReader(100);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(101, 0);
    assert.throws(() => reader.push(head), expectFrameError('oversized'));
  });

  test('a frame exactly at the limit is accepted', () => {
    const frame = encodeFrame({ t: 'x' }, Buffer.alloc(50));
    const reader = new FrameReader(frame.length - 4);
    assert.equal(reader.push(frame).length, 1);
  });

  test('a wrong version byte is refused', () => {
    const frame = encodeFrame({ t: 'ping' });
    frame.writeUInt8(ProtocolVersion + 1, 4);
    assert.throws(() => new FrameReader(1024).push(frame), expectFrameError('wrong-version'));
  });

  test('a header length running past the frame is malformed', () => {
    const frame = rawFrame({ header: Buffer.from('{}'), headerLength: 3 });
    assert.throws(() => new FrameReader(1024).push(frame), expectFrameError('malformed'));
  });

  test('a header that is not JSON is malformed', () => {
    const frame = rawFrame({ header: Buffer.from('{not json') });
    assert.throws(() => new FrameReader(1024).push(frame), expectFrameError('malformed'));
  });

  test('a length shorter than the fixed header is malformed', () => {
    const frame = Buffer.alloc(8);
    frame.writeUInt32BE(4, 0);
    assert.throws(() => new FrameReader(1024).push(frame), expectFrameError('malformed'));
  });

  test('pendingBytes reports a truncated frame', () => {
    const frame = encodeFrame({ t: 'ping', seq: 3 }, Buffer.from('body'));
    const reader = new FrameReader(1024);
    assert.deepEqual(reader.push(frame.subarray(0, frame.length - 1)), []);
    assert.equal(reader.pendingBytes, frame.length - 1);
    const frames = reader.push(frame.subarray(frame.length - 1));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]!.body.toString(), 'body');
    assert.equal(reader.pendingBytes, 0);
  });
});
