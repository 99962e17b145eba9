/**
 * Length-framed, versioned messages on a byte stream.
 *
 * A frame is: u32 length of what follows | u8 protocol version | u32 header length |
 * header (UTF-8 JSON) | body (raw bytes, possibly empty). The JSON header says what the
 * message is; the body carries bulk bytes (file blocks, pages) without JSON encoding.
 * The reader refuses anything over its size limit before buffering it, so a hostile
 * length field cannot make a node allocate memory.
 */

export const ProtocolVersion = 1;
const LengthBytes = 4;
const FixedHeaderBytes = 1 + 4; // version + header length

export type FrameErrorReason = 'oversized' | 'wrong-version' | 'malformed';

export class FrameError extends Error {
  constructor(
    readonly reason: FrameErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'FrameError';
  }
}

export interface Frame {
  header: unknown;
  body: Buffer;
}

export function encodeFrame(header: unknown, body: Buffer = Buffer.alloc(0)): Buffer {
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.allocUnsafe(LengthBytes + FixedHeaderBytes + headerBytes.length + body.length);
  out.writeUInt32BE(FixedHeaderBytes + headerBytes.length + body.length, 0);
  out.writeUInt8(ProtocolVersion, 4);
  out.writeUInt32BE(headerBytes.length, 5);
  headerBytes.copy(out, 9);
  body.copy(out, 9 + headerBytes.length);
  return out;
}

/**
 * Turns stream chunks into frames. push() returns the complete frames so far and throws
 * FrameError on the first bad frame; after a throw the reader must be discarded with its
 * connection, since the stream position can no longer be trusted.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  /** @param maxFrameBytes the largest frame accepted (length field value). */
  constructor(private readonly maxFrameBytes: number) {}

  /** Bytes received but not yet part of a complete frame (a truncated frame at close). */
  get pendingBytes(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < LengthBytes) break;
      const head = this.peek(LengthBytes);
      const length = head.readUInt32BE(0);
      if (length > this.maxFrameBytes) {
        throw new FrameError('oversized', `frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`);
      }
      if (length < FixedHeaderBytes) {
        throw new FrameError('malformed', `frame length ${length} is shorter than a frame header`);
      }
      if (this.buffered < LengthBytes + length) break;
      const raw = this.take(LengthBytes + length);
      frames.push(parseFrame(raw, length));
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!.subarray(0, n);
    return Buffer.concat(this.chunks).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return all.subarray(0, n);
  }
}

function parseFrame(raw: Buffer, length: number): Frame {
  const version = raw.readUInt8(4);
  if (version !== ProtocolVersion) {
    throw new FrameError('wrong-version', `protocol version ${version} is not supported (this node speaks ${ProtocolVersion})`);
  }
  const headerLength = raw.readUInt32BE(5);
  if (headerLength > length - FixedHeaderBytes) {
    throw new FrameError('malformed', `header length ${headerLength} runs past the end of the frame`);
  }
  const headerText = raw.subarray(9, 9 + headerLength).toString('utf8');
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch {
    throw new FrameError('malformed', 'frame header is not valid JSON');
  }
  return { header, body: Buffer.from(raw.subarray(9 + headerLength)) };
}
