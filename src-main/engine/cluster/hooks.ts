/**
 * The application's hooks: shell commands the node runs when it becomes primary (`start`),
 * before it stops being primary (`stop`), and as a health probe (`check`). Each runs with a
 * time limit (SIGTERM, then SIGKILL two seconds later); its output (the last 2 KiB) and exit
 * status go to the event log. A hook never throws: the caller decides what a failure means.
 */
import { spawn } from 'node:child_process';
import type { HookConfig } from '../../contract/control.js';

export type HookName = 'start' | 'stop' | 'check';

/** start/stop/check commands (null: none), checkFailures (@default 3), timeoutMs (@default 10000). */
export type HookSettings = HookConfig;

export const DefaultHookSettings: HookSettings = { start: null, stop: null, check: null, checkFailures: 3, timeoutMs: 10_000 };

export interface HookResult {
  hook: HookName;
  command: string;
  ok: boolean;
  /** Exit code, or null when it was killed or could not start. */
  exitCode: number | null;
  timedOut: boolean;
  ms: number;
  /** The last 2 KiB of stdout and stderr together. */
  output: string;
}

const OutputTailBytes = 2048;
const KillGraceMs = 2000;

export function runHook(hook: HookName, command: string, timeoutMs: number, env: Record<string, string>): Promise<HookResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    let output = Buffer.alloc(0);
    let timedOut = false;
    const keep = (chunk: Buffer) => {
      output = Buffer.concat([output, chunk]);
      if (output.length > OutputTailBytes) output = output.subarray(output.length - OutputTailBytes);
    };
    const child = spawn('/bin/sh', ['-c', command], { env: { ...process.env, ...env, UNDERSTUDY_HOOK: hook }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    // The whole process group: a hook's own children must not outlive its time limit.
    const killGroup = (signal: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGTERM');
      setTimeout(() => killGroup('SIGKILL'), KillGraceMs).unref();
    }, timeoutMs);
    const finish = (exitCode: number | null, error?: Error) => {
      clearTimeout(timer);
      const text = output.toString('utf8') + (error ? `${error.message}\n` : '');
      resolve({ hook, command, ok: exitCode === 0 && !timedOut, exitCode, timedOut, ms: Math.round(performance.now() - started), output: text.slice(-OutputTailBytes) });
    };
    child.once('error', (error) => finish(null, error));
    child.once('close', (code) => finish(code));
  });
}
