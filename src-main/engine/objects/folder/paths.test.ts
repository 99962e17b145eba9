import { describe, test, mock, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { ensureParents, resolveInside, safeComponents, UnsafePathError } from './paths.js';

function tempRoot(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'understudy-paths-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const refused = (error: unknown) => error instanceof UnsafePathError;

/** Paths a hostile or broken peer could send. */
const Hostile = [
  '..',
  '.',
  '',
  '../x',
  'a/../../x',
  'a/..',
  './a',
  'a/./b',
  'a//b',
  'a/',
  '/etc/passwd',
  '/',
  'C:/Windows',
  'c:x',
  'a\0b',
  '\0',
  'a/b\0/c',
];

describe('safeComponents', () => {
  test('splits a relative path into its components', () => {
    assert.deepEqual(safeComponents('a'), ['a']);
    assert.deepEqual(safeComponents('a/b/c.txt'), ['a', 'b', 'c.txt']);
    // Dots inside a name are not path steps.
    assert.deepEqual(safeComponents('..a/b..'), ['..a', 'b..']);
    assert.deepEqual(safeComponents('...'), ['...']);
    assert.deepEqual(safeComponents('.hidden/x'), ['.hidden', 'x']);
  });

  for (const path of Hostile) {
    test(`refuses ${JSON.stringify(path)}`, () => {
      assert.throws(() => safeComponents(path), refused);
    });
  }

  test('says why in the error', () => {
    assert.throws(() => safeComponents('a/../b'), /'\.\.' component/);
    assert.throws(() => safeComponents('a/./b'), /'\.' component/);
    assert.throws(() => safeComponents('a//b'), /\(empty\)/);
    assert.throws(() => safeComponents('/a'), /absolute/);
    assert.throws(() => safeComponents('a\0'), /NUL/);
  });
});

describe('resolveInside', () => {
  test('every path it returns is strictly inside root; the rest are refused', (t) => {
    const root = tempRoot(t);
    const candidates = [...Hostile, 'a', 'a/b', 'x/y/z.txt', '..a', 'a..', 'a/..b/c'];
    let accepted = 0;
    for (const path of candidates) {
      let resolved: string;
      try {
        resolved = resolveInside(root, path);
      } catch (error) {
        assert.ok(refused(error), `${JSON.stringify(path)} threw ${String(error)}`);
        continue;
      }
      accepted += 1;
      assert.ok(resolved.startsWith(root + sep), `${JSON.stringify(path)} resolved to ${resolved}, outside ${root}`);
      const rel = relative(root, resolved);
      assert.ok(rel !== '' && rel.split(sep)[0] !== '..', `${JSON.stringify(path)} resolved to ${resolved}`);
    }
    assert.equal(accepted, candidates.length - Hostile.length, 'every plain relative path is accepted');
    assert.equal(resolveInside(root, 'a/b'), join(root, 'a', 'b'));
  });
});

describe('ensureParents', () => {
  test('creates the missing parents (as directories with the given mode), not the entry itself', async (t) => {
    const root = tempRoot(t);
    const abs = await ensureParents(root, 'a/b/c/file.txt', 0o750);
    assert.equal(abs, join(root, 'a', 'b', 'c', 'file.txt'));
    for (const dir of ['a', 'a/b', 'a/b/c']) {
      const stat = lstatSync(join(root, dir));
      assert.ok(stat.isDirectory(), `${dir} is a directory`);
      assert.equal(stat.mode & 0o777, 0o750 & ~process.umask(), `${dir} has the requested mode`);
    }
    assert.equal(existsSync(abs), false, 'the entry itself is not created');
    // Existing parents are fine too.
    assert.equal(await ensureParents(root, 'a/b/other.txt'), join(root, 'a', 'b', 'other.txt'));
    assert.equal(await ensureParents(root, 'top.txt'), join(root, 'top.txt'));
  });

  test('refuses a parent that is a symlink, even one pointing inside root', async (t) => {
    const root = tempRoot(t);
    mkdirSync(join(root, 'real'));
    symlinkSync('real', join(root, 'inside-link')); // relative, inside root
    symlinkSync(join(root, 'real'), join(root, 'abs-inside-link')); // absolute, inside root
    const outside = tempRoot(t);
    symlinkSync(outside, join(root, 'outside-link'));
    mkdirSync(join(root, 'd'));
    symlinkSync('../real', join(root, 'd', 'deeper-link'));
    for (const path of ['inside-link/f.txt', 'abs-inside-link/f.txt', 'outside-link/f.txt', 'outside-link/new/f.txt', 'd/deeper-link/x/f.txt']) {
      await assert.rejects(ensureParents(root, path), (error: unknown) => refused(error) && /symlink/.test((error as Error).message), path);
    }
    assert.deepEqual(readdirSync(join(root, 'real')), [], 'nothing was created through a link');
    assert.deepEqual(readdirSync(outside), [], 'nothing was created outside root');
  });

  test('refuses a parent that is a file', async (t) => {
    const root = tempRoot(t);
    writeFileSync(join(root, 'file'), 'x');
    await assert.rejects(ensureParents(root, 'file/child.txt'), (error: unknown) => refused(error) && /not a directory/.test((error as Error).message));
  });

  test('refuses hostile wire paths before touching the disk', async (t) => {
    const root = tempRoot(t);
    for (const path of Hostile) await assert.rejects(ensureParents(root, path), refused, JSON.stringify(path));
    assert.deepEqual(readdirSync(root), []);
  });

  test('many concurrent calls sharing missing parents all succeed', async (t) => {
    const root = tempRoot(t);
    const paths = Array.from({ length: 64 }, (_, i) => `x/y/z/${i % 4}/f${i}.txt`);
    const results = await Promise.all(paths.map((path) => ensureParents(root, path)));
    assert.deepEqual(results, paths.map((path) => join(root, ...path.split('/'))));
    assert.deepEqual(readdirSync(join(root, 'x', 'y', 'z')).sort(), ['0', '1', '2', '3']);
  });

  test('tolerates a parent created by someone else between its check and its mkdir', async (t) => {
    const root = tempRoot(t);
    const racing = join(root, 'raced');
    const lstat = fsp.lstat;
    let raced = 0;
    // The first look at 'raced' finds nothing, and the directory appears right after.
    mock.method(fsp, 'lstat', async (path: string, ...rest: unknown[]) => {
      if (path === racing && raced === 0) {
        raced += 1;
        mkdirSync(racing);
        throw Object.assign(new Error(`ENOENT: no such file or directory, lstat '${path}'`), { code: 'ENOENT' });
      }
      return (lstat as (...args: unknown[]) => unknown)(path, ...rest);
    });
    syncBuiltinESMExports();
    t.after(() => {
      mock.restoreAll();
      syncBuiltinESMExports();
    });
    assert.equal(await ensureParents(root, 'raced/deeper/f.txt'), join(root, 'raced', 'deeper', 'f.txt'));
    assert.equal(raced, 1, 'the race was staged');
    assert.ok(statSync(join(root, 'raced', 'deeper')).isDirectory());
  });

  test('a symlink planted concurrently in place of a parent is still refused', async (t) => {
    const root = tempRoot(t);
    mkdirSync(join(root, 'real'));
    const racing = join(root, 'planted');
    const lstat = fsp.lstat;
    let raced = 0;
    mock.method(fsp, 'lstat', async (path: string, ...rest: unknown[]) => {
      if (path === racing && raced === 0) {
        raced += 1;
        symlinkSync('real', racing);
        throw Object.assign(new Error(`ENOENT: no such file or directory, lstat '${path}'`), { code: 'ENOENT' });
      }
      return (lstat as (...args: unknown[]) => unknown)(path, ...rest);
    });
    syncBuiltinESMExports();
    t.after(() => {
      mock.restoreAll();
      syncBuiltinESMExports();
    });
    await assert.rejects(ensureParents(root, 'planted/f.txt'), (error: unknown) => refused(error) && /symlink/.test((error as Error).message));
    assert.equal(raced, 1, 'the race was staged');
    assert.deepEqual(readdirSync(join(root, 'real')), []);
  });
});
