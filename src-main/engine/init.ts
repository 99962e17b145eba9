/** `understudy init`: a new node's identity and store in its home directory. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, isoTime } from './clock.js';
import { UnderstudyError } from './errors.js';
import { checkHome } from './home.js';
import { generateIdentity, identityPaths, saveIdentity } from './identity/identity.js';
import { Store, StoreFile } from './store/store.js';

export const DefaultListenHost = '0.0.0.0';
export const DefaultListenPort = 7420;

export interface InitOptions {
  home: string;
  name: string;
  listen: { host: string; port: number };
}

export async function initNode(options: InitOptions): Promise<{ home: string; nodeId: string }> {
  const name = options.name.trim();
  if (!/^[\p{L}\p{N}][\p{L}\p{N} ._-]{0,63}$/u.test(name)) {
    throw new UnderstudyError('usage', `the name '${options.name}' cannot be used`, {
      hint: 'use 1 to 64 letters, digits, spaces, dots, dashes or underscores, starting with a letter or digit',
    });
  }
  if (options.listen.port >= 65535) {
    throw new UnderstudyError('bad-address', `port ${options.listen.port} leaves no room for the heartbeat port`, {
      hint: 'a node uses PORT and PORT+1; choose a PORT below 65535',
    });
  }
  const home = checkHome(options.home, { create: true });
  if (existsSync(identityPaths(home).key) || existsSync(join(home, StoreFile))) {
    throw new UnderstudyError('home-already-initialized', `${home} already holds a node`, {
      hint: 'nothing was changed; use another --home for a new node',
    });
  }
  const identity = await generateIdentity({ commonName: `understudy ${name}` });
  saveIdentity(home, identity);
  const store = Store.open(home);
  try {
    store.setSetting('node.name', name);
    store.setSetting('node.listen', options.listen);
    store.setSetting('node.role', 'standalone');
    store.setSetting('node.epoch', 0);
    store.addEvent(isoTime(systemClock.now()), 'node.initialized', `node '${name}' created with id ${identity.nodeId}`, { nodeId: identity.nodeId });
  } finally {
    store.close();
  }
  return { home, nodeId: identity.nodeId };
}
