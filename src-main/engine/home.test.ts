import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnderstudyError } from './errors.js';
import { checkHome, HomeLock, LockFile } from './home.js';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-home-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function isError(code: string): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof UnderstudyError, `expected an UnderstudyError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

describe('checkHome', () => {
  test('an existing directory is accepted and returned as an absolute path', (t) => {
    const dir = tempDir(t);
    assert.equal(checkHome(dir), dir);
    assert.deepEqual(readdirSync(dir), [], 'the write probe is cleaned up');
  });

  test('a missing home without create is home-missing, and is not created', (t) => {
    const home = join(tempDir(t), 'node');
    assert.throws(() => checkHome(home), isError('home-missing'));
    assert.equal(existsSync(home), false);
  });

  test('with create, a missing home under an existing parent is created', (t) => {
    const home = join(tempDir(t), 'node');
    assert.equal(checkHome(home, { create: true }), home);
    assert.ok(statSync(home).isDirectory());
  });

  test('with create, a missing parent is home-missing and nothing is created', (t) => {
    const parent = join(tempDir(t), 'typo');
    assert.throws(() => checkHome(join(parent, 'node'), { create: true }), isError('home-missing'));
    assert.equal(existsSync(parent), false);
  });

  test('a file instead of a directory is home-missing', (t) => {
    const file = join(tempDir(t), 'file');
    writeFileSync(file, 'x');
    assert.throws(() => checkHome(file), isError('home-missing'));
    assert.throws(() => checkHome(file, { create: true }), isError('home-missing'));
  });
});

describe('HomeLock', () => {
  test('a second acquire while the first is held is already-running; release frees it', (t) => {
    const home = tempDir(t);
    const lock = HomeLock.acquire(home);
    assert.equal(readFileSync(join(home, LockFile), 'utf8').trim(), String(process.pid));
    assert.throws(() => HomeLock.acquire(home), isError('already-running'));
    lock.release();
    assert.equal(existsSync(join(home, LockFile)), false);
    HomeLock.acquire(home).release();
  });

  test('a lock held by another live process is already-running', (t) => {
    const home = tempDir(t);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    t.after(() => child.kill());
    assert.ok(child.pid && child.pid > 0);
    writeFileSync(join(home, LockFile), `${child.pid}\n`);
    assert.throws(() => HomeLock.acquire(home), isError('already-running'));
    assert.equal(readFileSync(join(home, LockFile), 'utf8').trim(), String(child.pid), 'the lock is left alone');
  });

  test('a lock left by a process that has exited is taken over', (t) => {
    const home = tempDir(t);
    const child = spawnSync('true');
    assert.ok(child.pid && child.pid > 0);
    writeFileSync(join(home, LockFile), `${child.pid}\n`);
    const lock = HomeLock.acquire(home);
    assert.equal(readFileSync(join(home, LockFile), 'utf8').trim(), String(process.pid));
    lock.release();
  });

  test('a lock file without a pid is taken over', (t) => {
    const home = tempDir(t);
    writeFileSync(join(home, LockFile), 'garbage');
    HomeLock.acquire(home).release();
  });
});
