/**
 * Expected failures: one family with a stable code, a sentence a person can act on,
 * and a hint saying what to do. Anything that is not an UnderstudyError is a bug.
 */
export type ErrorCode =
  | 'usage'
  | 'home-missing'
  | 'home-not-writable'
  | 'home-not-initialized'
  | 'home-already-initialized'
  | 'already-running'
  | 'not-running'
  | 'port-in-use'
  | 'listen-failed'
  | 'bad-address'
  | 'already-paired'
  | 'pair-code-invalid'
  | 'pair-code-wrong'
  | 'pair-code-expired'
  | 'pair-code-used'
  | 'pair-throttled'
  | 'pair-wrong-peer'
  | 'pair-unreachable'
  | 'pair-failed'
  | 'timeout'
  | 'control-failed'
  | 'store-failed'
  | 'switchover-refused'
  | 'switchover-incomplete'
  | 'failover-refused'
  | 'license-invalid'
  | 'license-expired'
  | 'license-required'
  | 'audit-failed';

export class UnderstudyError extends Error {
  readonly code: ErrorCode;
  /** What the user can do about it, when there is something to do. */
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.name = 'UnderstudyError';
    this.code = code;
    this.hint = options.hint;
  }

  /** The one line shown to a person: what failed and why, then what to do. */
  toLine(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message;
  }
}

export function isUnderstudyError(value: unknown): value is UnderstudyError {
  return value instanceof UnderstudyError;
}

export function assertNever(value: never, what: string): never {
  throw new Error(`unexpected ${what}: ${JSON.stringify(value)}`);
}

/** The message of anything thrown, for logs and wire replies. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
