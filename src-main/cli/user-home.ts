/** The default home of a node run by `npm start`: the user's data folder, per platform. */
import { homedir } from 'node:os';
import { join } from 'node:path';

export function defaultUserHome(): string {
  if (process.env.UNDERSTUDY_HOME) return process.env.UNDERSTUDY_HOME;
  switch (process.platform) {
    case 'win32':
      return join(process.env.APPDATA ?? join(homedir(), 'AppData', 'Roaming'), 'Understudy');
    case 'darwin':
      return join(homedir(), 'Library', 'Application Support', 'Understudy');
    default:
      return join(process.env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'understudy');
  }
}
