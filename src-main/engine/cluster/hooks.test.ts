import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runHook } from './hooks.js';

describe('runHook', () => {
  it('reports success, exit code, output and the environment it gave', async () => {
    const result = await runHook('start', 'echo "role=$UNDERSTUDY_ROLE hook=$UNDERSTUDY_HOOK"; echo oops >&2', 5000, { UNDERSTUDY_ROLE: 'primary' });
    assert.equal(result.ok, true);
    assert.equal(result.exitCode, 0);
    assert.match(result.output, /role=primary hook=start/);
    assert.match(result.output, /oops/);
  });

  it('reports a failing command with its exit code', async () => {
    const result = await runHook('check', 'exit 3', 5000, {});
    assert.equal(result.ok, false);
    assert.equal(result.exitCode, 3);
    assert.equal(result.timedOut, false);
  });

  it('stops a hook (and its children) at its time limit', async () => {
    const started = performance.now();
    const result = await runHook('stop', 'sleep 30 & sleep 30', 300, {});
    assert.equal(result.ok, false);
    assert.equal(result.timedOut, true);
    assert.ok(performance.now() - started < 5000, 'did not wait for the sleeps');
  });

  it('keeps only the tail of a long output', async () => {
    const result = await runHook('check', 'head -c 100000 /dev/zero | tr "\\0" x; echo END', 5000, {});
    assert.ok(result.output.length <= 2048);
    assert.match(result.output, /END/);
  });
});
