/** Command-line parsing shared by every command: --home, --json, and clear usage errors. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UnderstudyError } from '../engine/errors.js';

/** A mistake in how the command was called: exit status 2. */
export class UsageError extends UnderstudyError {
  constructor(message: string) {
    super('usage', message, { hint: "see 'understudy --help'" });
  }
}

export type Options = ParseArgsConfig['options'];

export const CommonOptions = {
  home: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const satisfies Options;

export function parse<O extends NonNullable<Options>>(command: string, argv: string[], options: O, positionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...CommonOptions, ...options }, allowPositionals: positionals, strict: true });
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message.replace(/\. To specify.*$/s, '')}`);
  }
}

/** The home directory from --home or UNDERSTUDY_HOME; one of them is required. */
export function homeFrom(values: { home?: string | undefined }): string {
  const home = values.home ?? process.env.UNDERSTUDY_HOME;
  if (!home) throw new UsageError('no home directory given: pass --home DIR or set UNDERSTUDY_HOME');
  return home;
}

export function requireOption(command: string, name: string, value: string | undefined): string {
  if (value === undefined || value === '') throw new UsageError(`${command}: --${name} is required`);
  return value;
}

/** Parses a positive whole number of milliseconds. */
export function parseMs(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Number(value);
  if (!Number.isInteger(ms) || ms < 10 || ms > 60_000) throw new UsageError(`--${name} must be a whole number of milliseconds from 10 to 60000`);
  return ms;
}
