/**
 * The parent's side of a small protocol the fault suite's helper processes (the delay proxy,
 * the net agent) speak: one JSON object per line. The child's first line without an `id`
 * says it is ready (and where it listens); each request `{id, ...}` on its stdin is answered
 * by `{id, ok, value}` or `{id, ok: false, error}` on its stdout.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface ChildRpc {
  /** The child's first message without an id (its "ready" line). */
  ready: Promise<Record<string, unknown>>;
  request<T>(body: Record<string, unknown>): Promise<T>;
  /** Ends the child (stdin closed, SIGKILL after 2 s). Idempotent. */
  close(): Promise<void>;
}

export function childRpc(child: ChildProcess, label: string): ChildRpc {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let markReady: (message: Record<string, unknown>) => void = () => {};
  let failed: (error: Error) => void = () => {};
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    markReady = resolve;
    failed = reject;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('exit', (code, signal) => {
    const error = new Error(`${label} exited with ${code ?? signal}: ${stderr.trim()}`);
    failed(error);
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  });
  child.once('error', (error) => failed(error));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let message: { id?: number; ok?: boolean; value?: unknown; error?: string };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      return;
    }
    if (message.id === undefined) return markReady(message as Record<string, unknown>);
    const waiter = pending.get(message.id);
    if (!waiter) return;
    pending.delete(message.id);
    if (message.ok) waiter.resolve(message.value);
    else waiter.reject(new Error(`${label}: ${message.error ?? 'request failed'}`));
  });
  let nextId = 0;
  let closing: Promise<void> | null = null;
  return {
    ready,
    request<T>(body: Record<string, unknown>): Promise<T> {
      if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`${label} is not running`));
      const id = ++nextId;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
        child.stdin!.write(`${JSON.stringify({ ...body, id })}\n`);
      });
    },
    close(): Promise<void> {
      closing ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.stdin!.end();
          const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
          await exited;
          clearTimeout(timer);
        }
      })();
      return closing;
    },
  };
}
