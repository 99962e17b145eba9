/**
 * `npm start`: opens the desktop app where Electron can run; where it cannot (no Electron
 * binary, no display, or no desktop app built), says so in one line and runs a node
 * headless instead, with its home in the user's data folder.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isUnderstudyError } from '../engine/errors.js';
import { identityPaths } from '../engine/identity/identity.js';
import { DefaultListenHost, DefaultListenPort, initNode } from '../engine/init.js';
import { serve } from './serve.js';
import { defaultUserHome } from './user-home.js';

const desktopEntry = fileURLToPath(new URL('../main.js', import.meta.url));

/** Why the desktop app cannot open here, or null when it can. */
function desktopUnavailable(): { reason: string } | { electron: string } {
  let electron: string;
  try {
    // In plain Node, the electron package exports the path of its binary, or throws when the
    // binary was never downloaded (as on build servers and in CI).
    electron = createRequire(import.meta.url)('electron') as string;
  } catch {
    return { reason: 'the Electron binary is not installed' };
  }
  if (process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY) return { reason: 'there is no display' };
  if (!existsSync(desktopEntry)) return { reason: 'the desktop app is not part of this build yet' };
  return { electron };
}

async function start(): Promise<number> {
  const desktop = desktopUnavailable();
  if ('electron' in desktop) {
    const child = spawn(desktop.electron, [desktopEntry], { stdio: 'inherit' });
    return new Promise((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  }
  const home = defaultUserHome();
  console.log(`understudy: cannot open the desktop app (${desktop.reason}); running the node headless with its home in ${home}`);
  if (!existsSync(identityPaths(home).key)) {
    mkdirSync(dirname(home), { recursive: true });
    const name = hostname().replace(/[^\p{L}\p{N} ._-]/gu, '-').slice(0, 64) || 'understudy';
    await initNode({ home, name, listen: { host: DefaultListenHost, port: DefaultListenPort } });
    console.log(`understudy: created node '${name}' listening on ${DefaultListenHost}:${DefaultListenPort}`);
  }
  console.log(`understudy: set it up with the wizard in a browser on this machine: 'npx understudy console-url --home ${join(home)}' prints its link`);
  return serve({ home });
}

start().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`understudy: ${isUnderstudyError(error) ? error.toLine() : String(error)}`);
    process.exitCode = 1;
  },
);
