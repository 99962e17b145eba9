/**
 * Installs this node as a system service, so protection starts at boot with nobody logged in:
 * writes the unit (systemd) or daemon (launchd) for this home and enables it. It does not
 * start it: this process holds the home now, so the service takes over at the next boot (or
 * when the admin stops this process and starts the service).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ServiceReport } from '../../contract/control.js';
import { UnderstudyError } from '../errors.js';
import { isDevMode } from '../license/vendor-keys.js';
import { launchdPlist, LaunchdLabel, systemdUnit, SystemdUnitName, type ServiceCommand } from './service-unit.js';

const run = promisify(execFile);
const CliScript = fileURLToPath(new URL('../../cli/main.js', import.meta.url));

interface Manager {
  name: 'systemd' | 'launchd';
  unitPath: string;
  text: (command: ServiceCommand) => string;
  /** Whether the manager runs here (a container may have no systemd). */
  running: () => boolean;
  enable: () => Promise<void>;
  isEnabled: () => Promise<boolean>;
}

function manager(env: NodeJS.ProcessEnv = process.env): Manager | null {
  // Tests write the unit to a folder of their own; a real node always uses the system's.
  const dir = isDevMode(env) ? env.UNDERSTUDY_SERVICE_DIR : undefined;
  if (process.platform === 'linux') {
    const unitPath = join(dir ?? '/etc/systemd/system', SystemdUnitName);
    return {
      name: 'systemd',
      unitPath,
      text: systemdUnit,
      running: () => !dir && existsSync('/run/systemd/system'),
      enable: async () => {
        await run('systemctl', ['daemon-reload']);
        await run('systemctl', ['enable', SystemdUnitName]);
      },
      isEnabled: () => run('systemctl', ['is-enabled', '--quiet', SystemdUnitName]).then(() => true, () => false),
    };
  }
  if (process.platform === 'darwin') {
    const unitPath = join(dir ?? '/Library/LaunchDaemons', `${LaunchdLabel}.plist`);
    return {
      name: 'launchd',
      unitPath,
      text: launchdPlist,
      running: () => !dir,
      enable: async () => void (await run('launchctl', ['load', '-w', unitPath])),
      isEnabled: () => run('launchctl', ['print', `system/${LaunchdLabel}`]).then(() => true, () => false),
    };
  }
  return null;
}

function commandFor(home: string): ServiceCommand {
  return { executable: process.execPath, script: CliScript, home, user: homeOwner(home), electron: Boolean(process.versions.electron) };
}

/** The service runs as whoever owns the home (its files are theirs), not as the admin who ran sudo. */
function homeOwner(home: string): string {
  const uid = statSync(home).uid;
  if (uid === process.getuid?.()) return userInfo().username;
  const line = existsSync('/etc/passwd') ? readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.split(':')[2] === String(uid)) : undefined;
  return line?.split(':')[0] ?? userInfo().username;
}

export async function serviceStatus(home: string): Promise<ServiceReport> {
  const m = manager();
  if (!m) return unsupported();
  const installed = existsSync(m.unitPath) && readFileSync(m.unitPath, 'utf8').includes(home);
  const enabled = installed && m.running() && (await m.isEnabled());
  const detail = !installed
    ? "Not installed: protection runs only while this app or 'understudy serve' runs."
    : enabled
      ? `Installed and enabled: ${m.unitPath} starts this node at boot.`
      : `Written to ${m.unitPath}, but not enabled here${m.running() ? '' : ` (${m.name} is not running on this machine)`}.`;
  return { platform: process.platform, manager: m.name, unitPath: installed ? m.unitPath : null, installed, enabled, detail };
}

export async function installService(home: string): Promise<ServiceReport> {
  const m = manager();
  if (!m) return unsupported();
  if (existsSync(m.unitPath) && !readFileSync(m.unitPath, 'utf8').includes(home)) {
    throw new UnderstudyError('usage', `${m.unitPath} already runs another Understudy home`, { hint: 'one service per machine; remove that one first if this home replaces it' });
  }
  const temporary = `${m.unitPath}.tmp-${process.pid}`;
  try {
    writeFileSync(temporary, m.text(commandFor(home)), { mode: 0o644 });
    renameSync(temporary, m.unitPath); // never a half-written unit
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new UnderstudyError('usage', `cannot write ${m.unitPath}: installing a system service needs administrator rights`, {
        hint: `run 'sudo understudy service install --home ${home}' once, or run the app as an administrator`,
      });
    }
    throw new UnderstudyError('usage', `cannot write ${m.unitPath}: ${code ?? String(error)}`);
  }
  if (!m.running()) {
    return {
      platform: process.platform,
      manager: m.name,
      unitPath: m.unitPath,
      installed: true,
      enabled: false,
      detail: `Written to ${m.unitPath}; ${m.name} is not running on this machine, so it could not be enabled here.`,
    };
  }
  try {
    await m.enable();
  } catch (error) {
    const why = (error as { stderr?: string }).stderr?.trim() || String(error);
    throw new UnderstudyError('usage', `the service was written to ${m.unitPath} but ${m.name} would not enable it: ${why}`, { hint: `enable it by hand: ${m.name === 'systemd' ? `systemctl enable ${SystemdUnitName}` : `launchctl load -w ${m.unitPath}`}` });
  }
  return {
    platform: process.platform,
    manager: m.name,
    unitPath: m.unitPath,
    installed: true,
    enabled: true,
    detail: `Installed and enabled: the service starts this node at boot. This process keeps the node until then (or stop it and start the service now).`,
  };
}

function unsupported(): ServiceReport {
  return {
    platform: process.platform,
    manager: null,
    unitPath: null,
    installed: false,
    enabled: false,
    detail: "The wizard cannot install a service on this system yet: keep the app running, or start 'understudy serve' at boot from the system scheduler.",
  };
}
