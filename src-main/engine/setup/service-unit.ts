/**
 * The system service definitions that run this node's home at boot: a systemd unit (Linux)
 * and a launchd daemon (macOS). Pure text, so they are tested without installing anything.
 */

export interface ServiceCommand {
  /** The Node (or Electron) binary. */
  executable: string;
  /** The CLI's entry script. */
  script: string;
  home: string;
  user: string;
  /** Electron's binary runs as plain Node only with ELECTRON_RUN_AS_NODE=1. */
  electron: boolean;
}

export const SystemdUnitName = 'understudy.service';
export const LaunchdLabel = 'com.understudy.node';

/** systemd quotes arguments with double quotes; a backslash or quote inside is escaped. */
function systemdQuote(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function systemdUnit(command: ServiceCommand): string {
  return [
    '# Written by the Understudy setup wizard: runs this node at boot, with nobody logged in.',
    '[Unit]',
    'Description=Understudy high-availability node',
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `User=${command.user}`,
    ...(command.electron ? ['Environment=ELECTRON_RUN_AS_NODE=1'] : []),
    `ExecStart=${[command.executable, command.script, 'serve', '--home', command.home].map(systemdQuote).join(' ')}`,
    '# serve exits 0 after a clean shutdown on SIGTERM; give it time to close links and the store.',
    'KillSignal=SIGTERM',
    'TimeoutStopSec=20',
    'Restart=on-failure',
    'RestartSec=2',
    'LimitNOFILE=65536',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function launchdPlist(command: ServiceCommand): string {
  const args = [command.executable, command.script, 'serve', '--home', command.home].map((a) => `    <string>${xml(a)}</string>`);
  const env = command.electron ? ['  <key>EnvironmentVariables</key>', '  <dict><key>ELECTRON_RUN_AS_NODE</key><string>1</string></dict>'] : [];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    '<dict>',
    `  <key>Label</key><string>${LaunchdLabel}</string>`,
    '  <key>ProgramArguments</key>',
    '  <array>',
    ...args,
    '  </array>',
    `  <key>UserName</key><string>${xml(command.user)}</string>`,
    ...env,
    '  <key>RunAtLoad</key><true/>',
    '  <key>KeepAlive</key><dict><key>SuccessfulExit</key><false/></dict>',
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}
