/**
 * The setup wizard's progress, kept in the node's store so that any window — the desktop
 * app, or a browser through the web console — picks it up where it was left.
 */
import { networkInterfaces } from 'node:os';
import type { NodeRole, SetupRole, SetupState } from '../../contract/control.js';
import type { Store } from '../store/store.js';
import { UnderstudyError } from '../errors.js';

const Key = 'setup.state';
export const WizardSteps = 7;

type Stored = Pick<SetupState, 'step' | 'role' | 'done'>;

export function readSetup(store: Store, role: NodeRole, listen: { host: string; port: number }): SetupState {
  const stored = store.getSetting<Stored>(Key);
  // A node set up from the CLI (paired already, never through the wizard) needs no wizard.
  const state = stored ?? { step: 0, role: null, done: role !== 'standalone' };
  return { ...state, addresses: reachableAddresses(listen) };
}

export function saveSetup(store: Store, role: NodeRole, listen: { host: string; port: number }, change: Partial<Stored>): SetupState {
  if (change.step !== undefined && (change.step < 0 || change.step > WizardSteps)) {
    throw new UnderstudyError('usage', `setup step ${change.step} does not exist`, { hint: `steps are 1 to ${WizardSteps}` });
  }
  const current = readSetup(store, role, listen);
  const next: Stored = { step: change.step ?? current.step, role: (change.role as SetupRole | undefined) ?? current.role, done: change.done ?? current.done };
  store.setSetting(Key, next);
  return { ...next, addresses: current.addresses };
}

/** Where another machine can reach this node: its listen address, or each of its interfaces' when it listens on all. */
export function reachableAddresses(listen: { host: string; port: number }): string[] {
  if (listen.host !== '0.0.0.0' && listen.host !== '::') return [`${listen.host}:${listen.port}`];
  const found: string[] = [];
  for (const addresses of Object.values(networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) found.push(`${a.address}:${listen.port}`);
  }
  return [...found, `127.0.0.1:${listen.port}`];
}
