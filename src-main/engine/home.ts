/**
 * A node's home directory: checks that it is usable, and the lock that keeps two
 * `serve` processes off one home.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UnderstudyError } from './errors.js';

export const LockFile = 'understudy.lock';

const ErrnoWords: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on the disk',
  ENOTDIR: 'a part of the path is not a directory',
};

/** A file-system failure in words, with its code for searching: "read-only file system (EROFS)". */
export function explainFsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (!code) return (error as Error).message;
  return ErrnoWords[code] ? `${ErrnoWords[code]} (${code})` : code;
}

/**
 * Makes sure `home` is a writable directory. With create, a missing home is created
 * (its parent must exist: a mistyped path should not grow a tree of folders).
 */
export function checkHome(home: string, options: { create?: boolean } = {}): string {
  const dir = resolve(home);
  if (!existsSync(dir)) {
    if (!options.create) {
      throw new UnderstudyError('home-missing', `the home directory ${dir} does not exist`, {
        hint: `create a node there with 'understudy init --home ${dir} --name NAME', or give the right --home`,
      });
    }
    if (!existsSync(dirname(dir))) {
      throw new UnderstudyError('home-missing', `cannot create ${dir}: its parent directory does not exist`, {
        hint: 'create the parent directory first, or choose another --home',
      });
    }
    try {
      mkdirSync(dir, { mode: 0o700 });
    } catch (error) {
      throw new UnderstudyError('home-not-writable', `cannot create ${dir}: ${explainFsError(error)}`, {
        hint: 'choose a --home in a directory you can write to',
        cause: error,
      });
    }
  }
  if (!statSync(dir).isDirectory()) {
    throw new UnderstudyError('home-missing', `${dir} is not a directory`, { hint: 'give a directory as --home' });
  }
  // access(W_OK) says yes to root on a read-only mount; only a real write tells the truth.
  const probe = join(dir, `.write-probe-${process.pid}`);
  try {
    closeSync(openSync(probe, 'w'));
    rmSync(probe);
  } catch (error) {
    throw new UnderstudyError('home-not-writable', `the home directory ${dir} is not writable: ${explainFsError(error)}`, {
      hint: 'fix its permissions, or choose another --home',
      cause: error,
    });
  }
  return dir;
}

/** An exclusive claim on a home by one running node. */
export class HomeLock {
  private constructor(private readonly path: string) {}

  static acquire(home: string): HomeLock {
    const path = join(home, LockFile);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o644);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new HomeLock(path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
        if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) {
          throw new UnderstudyError('already-running', `a node is already running on ${home} (pid ${pid})`, {
            hint: "stop it first, or use 'understudy status' to talk to it",
          });
        }
        // The process that held the lock is gone (crash, kill -9): the lock is stale.
        rmSync(path, { force: true });
      }
    }
    throw new UnderstudyError('already-running', `cannot take the lock ${path}`, { hint: 'remove it if no node runs on this home' });
  }

  release(): void {
    rmSync(this.path, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process that nobody has reaped yet still answers kill(0); it holds nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}
