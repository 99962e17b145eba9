// Draws the tray icons (a filled circle per state) and the app icon as PNGs into assets/icons/.
// Run once when the design changes: node assets/build/make-icons.mjs (the PNGs are committed).
import { mkdirSync, writeFileSync } from 'node:fs';
import { Buffer } from 'node:buffer';
import { URL } from 'node:url';
import { deflateSync } from 'node:zlib';

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
const crc32 = (buf) => {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};
const chunk = (type, data) => {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
};

/** An RGBA PNG of size×size where pixel(x, y) returns [r, g, b, a]. */
function png(size, pixel) {
  const raw = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) raw.set(pixel(x, y), y * (size * 4 + 1) + 1 + x * 4);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8;
  header[9] = 6;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

/** A filled circle with a soft edge, and a white ring inside for contrast on dark panels. */
function circle(size, [r, g, b]) {
  const c = (size - 1) / 2;
  const radius = size * 0.45;
  return png(size, (x, y) => {
    const d = Math.hypot(x - c, y - c);
    const alpha = Math.max(0, Math.min(1, radius - d + 0.5));
    const ring = Math.abs(d - radius * 0.55) < size * 0.06;
    return ring ? [255, 255, 255, Math.round(alpha * 255)] : [r, g, b, Math.round(alpha * 255)];
  });
}

const dir = new URL('../icons/', import.meta.url);
mkdirSync(dir, { recursive: true });
const colours = { green: [31, 138, 76], amber: [214, 140, 20], red: [197, 48, 48] };
for (const [name, rgb] of Object.entries(colours)) {
  writeFileSync(new URL(`tray-${name}.png`, dir), circle(32, rgb));
  writeFileSync(new URL(`tray-${name}@2x.png`, dir), circle(64, rgb));
}
writeFileSync(new URL('icon.png', dir), circle(512, [44, 82, 130]));
