/** The wizard's screens on each kind of machine: at most seven. */
import type { SetupRole } from '../../../src-main/contract/control';

export type StepName = 'role' | 'pair' | 'license' | 'protect' | 'policy' | 'sync' | 'done';

export const StepTitles: Record<StepName, string> = {
  role: 'This machine',
  pair: 'Pair the machines',
  license: 'License',
  protect: 'What to protect',
  policy: 'Failover',
  sync: 'First copy',
  done: 'Done',
};

export function stepsFor(role: SetupRole | null): StepName[] {
  switch (role) {
    case 'backup':
      return ['role', 'pair', 'license', 'policy', 'sync', 'done'];
    case 'witness':
      return ['role', 'pair', 'done'];
    default:
      return ['role', 'pair', 'license', 'protect', 'policy', 'sync', 'done'];
  }
}
