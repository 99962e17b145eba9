/** Pages as they travel in a message body: a 4-byte page number, then the page, repeated. */

/**
 * SQLite's lock-byte page: the page holding byte offset 2^30, which SQLite never uses (its
 * bytes are the file locks on Windows). sqlite_dbpage reads it as zeros and refuses to write
 * it, so it is never sent: databases over 1 GiB would otherwise fail to apply.
 */
export function lockBytePage(pageSize: number): number {
  return Math.floor(0x40000000 / pageSize) + 1;
}

export function encodePages(pages: Iterable<[number, Buffer]>, pageSize: number): Buffer {
  const list = [...pages];
  const body = Buffer.allocUnsafe(list.length * (4 + pageSize));
  let at = 0;
  for (const [pgno, data] of list) {
    body.writeUInt32BE(pgno, at);
    data.copy(body, at + 4, 0, pageSize);
    at += 4 + pageSize;
  }
  return body;
}

/** Throws when the body is not a whole number of pages of pageSize (the message is then refused). */
export function decodePages(body: Buffer, pageSize: number): [number, Buffer][] {
  const stride = 4 + pageSize;
  if (body.length % stride !== 0) throw new Error(`a body of ${body.length} bytes is not a whole number of ${pageSize}-byte pages`);
  const pages: [number, Buffer][] = [];
  for (let at = 0; at < body.length; at += stride) {
    const pgno = body.readUInt32BE(at);
    if (pgno === 0) throw new Error('page number 0');
    pages.push([pgno, body.subarray(at + 4, at + stride)]);
  }
  return pages;
}
