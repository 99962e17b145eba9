/** Where a node's control endpoint lives: a Unix socket in its home, or a named pipe on Windows. */
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';

export function controlPath(home: string): string {
  if (process.platform === 'win32') {
    const tag = createHash('sha256').update(resolve(home).toLowerCase()).digest('hex').slice(0, 16);
    return `\\\\.\\pipe\\understudy-${tag}`;
  }
  return join(home, 'control.sock');
}

/** Longest request line the control endpoint accepts. */
export const MaxControlLineBytes = 1024 * 1024;
