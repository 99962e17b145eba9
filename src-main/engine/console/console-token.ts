/**
 * The web console's login token: a secret in HOME/console-token (owner-only), made on the
 * node's first start. `understudy console-url` puts it in the URL's fragment, which browsers
 * never send; the page trades it for a session cookie and clears it from the address bar.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ConsoleTokenFile = 'console-token';

export function loadOrCreateConsoleToken(home: string): string {
  const path = join(home, ConsoleTokenFile);
  if (existsSync(path)) {
    const token = readFileSync(path, 'utf8').trim();
    if (/^[A-Za-z0-9_-]{43}$/.test(token)) return token;
  }
  const token = randomBytes(32).toString('base64url');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  return token;
}

export function tokensEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
