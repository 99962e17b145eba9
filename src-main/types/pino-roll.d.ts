// pino-roll ships no types; this is the part of its API we use.
declare module 'pino-roll' {
  import type { DestinationStream } from 'pino';
  interface PinoRollOptions {
    file: string;
    size?: string | number;
    frequency?: string | number;
    limit?: { count: number };
    mkdir?: boolean;
  }
  export default function pinoRoll(options: PinoRollOptions): Promise<DestinationStream & NodeJS.WritableStream>;
}
