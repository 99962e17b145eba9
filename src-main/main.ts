/**
 * The desktop app's Electron main process: one window (the renderer), a tray icon whose colour
 * tells the state, native notifications for what matters, and the engine — the system
 * service's when it runs, else the same engine in this process (app/engine-connection.ts).
 * Thin on purpose: the window talks to the engine only through the control contract, every
 * IPC call is checked for its sender, and the logic it applies (tray colour, notification
 * policy) lives in plain modules tested without Electron.
 */
import { app, BrowserWindow, ipcMain, Menu, nativeImage, Notification, Tray, type IpcMainInvokeEvent } from 'electron';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { EventRecord, StatusReport } from './contract/control.js';
import { connectEngine, type EngineConnection } from './app/engine-connection.js';
import { NotificationPolicy } from './app/notification-policy.js';
import { trayState, type TrayColour } from './app/tray-state.js';
import { isCommandName } from './engine/control/command-schemas.js';
import { defaultUserHome } from './cli/user-home.js';

const RendererIndex = fileURLToPath(new URL('../../src-renderer/dist/index.html', import.meta.url));
const PreloadPath = fileURLToPath(new URL('./preload/preload.cjs', import.meta.url));
const IconDir = fileURLToPath(new URL('../../assets/icons/', import.meta.url));
const StatusEveryMs = 2000;

let engine: EngineConnection | null = null;
let window: BrowserWindow | null = null;
let tray: Tray | null = null;
let quitting = false;
const policy = new NotificationPolicy();

/** Only our own page may call the engine: not another frame, not a page it navigated to. */
function fromOurWindow(event: IpcMainInvokeEvent): boolean {
  return window !== null && event.sender === window.webContents && event.senderFrame?.url.split('#')[0] === pathToFileURL(RendererIndex).href;
}

function openWindow(): void {
  if (window) {
    window.show();
    window.focus();
    return;
  }
  window = new BrowserWindow({
    width: 1280,
    height: 800,
    minWidth: 1024,
    minHeight: 700,
    title: 'Understudy',
    webPreferences: { contextIsolation: true, sandbox: true, nodeIntegration: false, preload: PreloadPath },
  });
  // The renderer never leaves its own page.
  window.webContents.on('will-navigate', (event) => event.preventDefault());
  window.webContents.setWindowOpenHandler(() => ({ action: 'deny' }));
  void window.loadFile(RendererIndex);
  // Closing the window keeps Understudy in the tray: protection does not depend on a window.
  window.on('close', (event) => {
    if (quitting) return;
    event.preventDefault();
    window?.hide();
  });
  window.on('closed', () => (window = null));
}

function paintTray(status: StatusReport | null): void {
  const state = trayState(status);
  tray?.setImage(icon(state.colour));
  tray?.setToolTip(`${state.summary}${engine ? ` — ${engine.mode === 'service' ? 'using the Understudy service' : 'engine running in this app'}` : ''}`);
}

function icon(colour: TrayColour) {
  return nativeImage.createFromPath(join(IconDir, `tray-${colour}.png`));
}

function notify(n: { title: string; body: string; urgency: 'critical' | 'normal' }): void {
  if (Notification.isSupported()) new Notification({ title: n.title, body: n.body, urgency: n.urgency }).show();
}

async function pollStatus(): Promise<void> {
  let status: StatusReport | null = null;
  try {
    status = (await engine?.client.call('node:status', {})) ?? null;
  } catch {
    status = null;
  }
  paintTray(status);
  if (status) for (const n of policy.onStatus(status)) notify(n);
  // The menu offers pause or resume as the objects stand now; rebuilt only when that flips.
  const anyPaused = status?.objects.some((o) => o.paused) ?? false;
  if (tray && anyPaused !== menuShowsResume) {
    menuShowsResume = anyPaused;
    tray.setContextMenu(buildTrayMenu());
  }
}

let menuShowsResume = false;

/** Pauses or resumes every protected object (run on the primary; the engine refuses elsewhere with one line). */
async function pauseAll(verb: 'pause' | 'resume'): Promise<void> {
  const status = await engine?.client.call('node:status', {});
  try {
    for (const object of status?.objects ?? []) await engine?.client.call(verb === 'pause' ? 'object:pause' : 'object:resume', { id: object.id });
    notify({ title: verb === 'pause' ? 'Replication paused' : 'Replication resumed', body: verb === 'pause' ? 'Changes are kept on this machine and sent when you resume.' : 'What was held back is on its way to the backup.', urgency: 'normal' });
  } catch (error) {
    notify({ title: `Could not ${verb}`, body: (error as Error).message, urgency: 'critical' });
  }
  await pollStatus();
}

function buildTrayMenu(): Menu {
  return Menu.buildFromTemplate([
    { label: 'Open Understudy', click: () => openWindow() },
    {
      label: 'Switch over',
      click: () => {
        void engine?.client.call('cluster:switchover', {}).then(
          (done) => notify({ title: 'Switchover done', body: `This machine is now the ${done.role} (epoch ${done.epoch}).`, urgency: 'normal' }),
          (error: Error) => notify({ title: 'Switchover refused', body: error.message, urgency: 'critical' }),
        );
      },
    },
    menuShowsResume
      ? { label: 'Resume replication', click: () => void pauseAll('resume') }
      : { label: 'Pause replication', click: () => void pauseAll('pause') },
    { type: 'separator' },
    {
      label: 'Quit (protection stops on this machine unless the service runs it)',
      click: () => {
        quitting = true;
        app.quit();
      },
    },
  ]);
}

async function main(): Promise<void> {
  if (!app.requestSingleInstanceLock()) {
    app.quit();
    return;
  }
  app.on('second-instance', () => openWindow());
  await app.whenReady();
  engine = await connectEngine(join(app.getPath('userData'), 'home') || defaultUserHome());
  ipcMain.handle('understudy:call', async (event, command: unknown, params: unknown) => {
    if (!fromOurWindow(event)) throw new Error('refused: not the Understudy window');
    if (!isCommandName(command)) throw new Error(`unknown command ${JSON.stringify(command)}`);
    // The engine checks the parameters against the contract's schemas.
    return engine!.client.call(command, params as never);
  });
  await engine.client.call('events:subscribe', {});
  engine.client.onEvent((event: EventRecord) => {
    window?.webContents.send('understudy:event', event);
    const n = policy.onEvent(event);
    if (n) notify(n);
  });
  tray = new Tray(icon('amber'));
  tray.setContextMenu(buildTrayMenu());
  tray.on('click', () => openWindow());
  setInterval(() => void pollStatus(), StatusEveryMs);
  void pollStatus();
  app.setLoginItemSettings({ openAtLogin: true });
  openWindow();
  // The tray keeps the app (and an in-app engine) running when every window is closed.
  app.on('window-all-closed', () => undefined);
  app.on('before-quit', () => {
    quitting = true;
    void engine?.stop();
  });
}

void main();
