/** `understudy pause | resume | resync | history ID`: one protected object's replication, on the primary. */
import type { LagSample, ObjectStatus } from '../contract/control.js';
import { call } from './call.js';
import { homeFrom, parse, UsageError } from './args.js';

type Verb = 'pause' | 'resume' | 'resync' | 'history';

/** Runs one of the verbs with its single object id; prints one line (history: a table). */
export async function objectCommand(verb: Verb, argv: string[]): Promise<number> {
  const { values, positionals } = parse(verb, argv, {}, true);
  if (positionals.length !== 1) throw new UsageError(`${verb}: give exactly one object id (see 'understudy status')`);
  const home = homeFrom(values);
  const id = positionals[0]!;
  if (verb === 'history') {
    const result = await call(home, 'object:history', { id });
    console.log(values.json ? JSON.stringify(result) : formatHistory(result.samples, result.intervalMs));
    return 0;
  }
  const command = verb === 'pause' ? 'object:pause' : verb === 'resume' ? 'object:resume' : 'object:resync';
  const status = await call(home, command, { id });
  console.log(values.json ? JSON.stringify(status) : describe(verb, status));
  return 0;
}

function describe(verb: Exclude<Verb, 'history'>, o: ObjectStatus): string {
  switch (verb) {
    case 'pause':
      return `Paused ${o.id}: its changes are captured but not sent to the backup (${o.pending} pending) until 'understudy resume ${o.id}'.`;
    case 'resume':
      return `Resumed ${o.id}: sending what was held back to the backup (${o.pending} pending, ${o.state}).`;
    case 'resync':
      return `Resync of ${o.id} started: every ${o.kind === 'sqlite' ? 'page' : 'file'} is compared with the backup's copy and what differs is sent; the 'object.resync' event says what it found.`;
  }
}

function formatHistory(samples: LagSample[], intervalMs: number): string {
  if (samples.length === 0) return `No samples yet (one every ${intervalMs / 1000} s).`;
  const header = 'AT                        LAG MS  CAPTURE    SEND   APPLY  PENDING   BYTES/S';
  const rows = samples.map((s) =>
    [s.at.padEnd(24), String(s.lagMs).padStart(8), String(s.captureMs).padStart(8), String(s.sendMs).padStart(7), String(s.applyMs).padStart(7), String(s.pending).padStart(8), String(s.bytesPerSec).padStart(9)].join(' '),
  );
  return [header, ...rows].join('\n');
}
