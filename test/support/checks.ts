/** Assertions shared by the tests of refused commands: one clear line, nothing changed. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CliResult } from './harness.js';

/**
 * Checks that a command was refused the way a person should see it: the exit status, nothing
 * on stdout, and exactly one line on stderr, starting with 'understudy: ', with no stack
 * trace, saying what went wrong (`says`) and what to do about it (`todo`). Returns the line.
 */
export function assertRefused(result: CliResult, expected: { exit: 1 | 2; says: RegExp; todo: RegExp }): string {
  const context = `exit ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
  assert.equal(result.code, expected.exit, `exit status\n${context}`);
  assert.equal(result.stdout, '', `nothing on stdout\n${context}`);
  assert.ok(!result.stderr.includes('    at '), `a stack trace on stderr\n${context}`);
  const lines = result.stderr.split('\n').filter((line) => line.trim() !== '');
  assert.equal(lines.length, 1, `exactly one line on stderr\n${context}`);
  const line = lines[0]!;
  assert.ok(line.startsWith('understudy: '), `the line starts with 'understudy: '\n${context}`);
  assert.match(line, expected.says);
  assert.match(line, expected.todo);
  return line;
}

/**
 * Every file and directory under root, with a hash of each file's content (an empty object
 * when root does not exist), to show that a refused command changed nothing.
 */
export function snapshotTree(root: string, skip: (relative: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(root)) return out;
  const walk = (relative: string) => {
    for (const name of readdirSync(join(root, relative)).sort()) {
      const path = relative ? `${relative}/${name}` : name;
      if (skip(path)) continue;
      const stat = lstatSync(join(root, path));
      if (stat.isDirectory()) {
        out[`${path}/`] = `dir ${(stat.mode & 0o777).toString(8)}`;
        walk(path);
      } else if (stat.isFile()) {
        out[path] = `file ${(stat.mode & 0o777).toString(8)} ${createHash('sha256').update(readFileSync(join(root, path))).digest('hex')}`;
      } else {
        out[path] = 'other';
      }
    }
  };
  walk('');
  return out;
}
