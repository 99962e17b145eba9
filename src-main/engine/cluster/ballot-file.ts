/**
 * The witness's ballot on disk: the highest epoch it granted, written durably (file and
 * directory fsynced) before the vote is answered, so a witness killed and restarted never
 * grants the same epoch twice.
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { BallotStore } from './lease.js';

export function ballotFile(home: string): BallotStore {
  const path = join(home, 'witness-ballot.json');
  const read = (): { epoch: number; candidate: string | null } => {
    if (!existsSync(path)) return { epoch: 0, candidate: null };
    const saved = JSON.parse(readFileSync(path, 'utf8')) as { epoch?: unknown; candidate?: unknown };
    if (typeof saved.epoch !== 'number' || !Number.isInteger(saved.epoch) || saved.epoch < 0) {
      throw new Error(`${path} is damaged: it holds no epoch; restore it from a backup of this home`);
    }
    return { epoch: saved.epoch, candidate: typeof saved.candidate === 'string' ? saved.candidate : null };
  };
  return {
    load: () => read().epoch,
    lastCandidate: () => read().candidate,
    save(epoch: number, candidate: string): void {
      const temporary = `${path}.tmp`;
      const fd = openSync(temporary, 'w', 0o600);
      try {
        writeSync(fd, JSON.stringify({ epoch, candidate, at: new Date().toISOString() }));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, path);
      const dir = openSync(home, 'r');
      try {
        fsyncSync(dir);
      } finally {
        closeSync(dir);
      }
    },
  };
}
