/**
 * Structured JSON logs (pino) to a size-rotated file in the home directory, and, for a node
 * run in a terminal, the same records as readable lines on stderr. Never log secrets:
 * keys, pairing codes and license keys stay out of every record.
 */
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import pinoRoll from 'pino-roll';

export type { Logger };

export const LogDir = 'logs';
/** Rotate the log at this size, keeping this many old files. */
const LogFileSize = '10m';
const LogFilesKept = 5;

export interface LoggerOptions {
  home: string;
  /** Also print readable lines on stderr. @default false */
  terminal?: boolean;
  /** @default 'info' */
  level?: string;
}

export async function createLogger(options: LoggerOptions): Promise<Logger> {
  const file = await pinoRoll({
    file: join(options.home, LogDir, 'understudy.log'),
    size: LogFileSize,
    limit: { count: LogFilesKept },
    mkdir: true,
  });
  const streams: pino.StreamEntry[] = [{ stream: file, level: 'debug' }];
  if (options.terminal) streams.push({ stream: new ReadableLines(process.stderr), level: 'info' });
  return pino(
    { level: options.level ?? process.env.UNDERSTUDY_LOG_LEVEL ?? 'info', base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.multistream(streams),
  );
}

/** A logger that writes nowhere, for unit tests and one-shot commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

const LevelNames: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const Skipped = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'sub']);

/** Turns pino's JSON lines into "12:00:01.250 INFO  [link] message key=value". */
class ReadableLines extends Writable {
  constructor(private readonly out: NodeJS.WritableStream) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (!line) continue;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        const time = typeof record.time === 'string' ? record.time.slice(11, 23) : '';
        const level = (LevelNames[record.level as number] ?? String(record.level)).padEnd(5);
        const sub = record.sub ? ` [${String(record.sub)}]` : '';
        const fields = Object.entries(record)
          .filter(([key]) => !Skipped.has(key))
          .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
          .join(' ');
        this.out.write(`${time} ${level}${sub} ${String(record.msg ?? '')}${fields ? ` ${fields}` : ''}\n`);
      } catch {
        this.out.write(`${line}\n`);
      }
    }
    done();
  }
}
