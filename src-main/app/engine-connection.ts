/**
 * Where the desktop app's engine runs. A system service (installed by the wizard, recommended:
 * protection starts at boot) is used when its control socket answers; otherwise the app runs
 * the very same engine in its own process, with a home in the user's data folder. Either way
 * the app talks to it through the control contract over its control socket.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { ControlClient } from '../engine/control/control-client.js';
import { identityPaths } from '../engine/identity/identity.js';
import { DefaultListenHost, DefaultListenPort, initNode } from '../engine/init.js';
import { createLogger } from '../engine/log.js';
import { HomeLock } from '../engine/home.js';
import { UnderstudyNode } from '../engine/node.js';

/** The system service's home (assets/understudy.service). */
export const ServiceHome = process.env.UNDERSTUDY_SERVICE_HOME ?? '/var/lib/understudy';

export interface EngineConnection {
  client: ControlClient;
  /** Said in the app: which engine it is using. */
  mode: 'service' | 'in-app';
  home: string;
  stop(): Promise<void>;
}

export async function connectEngine(userHome: string): Promise<EngineConnection> {
  try {
    const client = await ControlClient.connect(ServiceHome);
    return { client, mode: 'service', home: ServiceHome, stop: async () => client.close() };
  } catch {
    // No service (or no access to it): run the engine here.
  }
  if (!existsSync(identityPaths(userHome).key)) {
    mkdirSync(dirname(userHome), { recursive: true });
    const name = hostname().replace(/[^\p{L}\p{N} ._-]/gu, '-').slice(0, 64) || 'understudy';
    await initNode({ home: userHome, name, listen: { host: DefaultListenHost, port: DefaultListenPort } });
  }
  const lock = HomeLock.acquire(userHome);
  const log = await createLogger({ home: userHome, terminal: false });
  const node = await UnderstudyNode.start({ home: userHome, log, lock, host: 'app' });
  const client = await ControlClient.connect(userHome);
  return {
    client,
    mode: 'in-app',
    home: userHome,
    stop: async () => {
      client.close();
      await node.stop();
    },
  };
}
