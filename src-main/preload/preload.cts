/**
 * The desktop window's preload: exposes the control contract (ControlApi) as
 * window.understudy, and nothing else. Sandboxed preloads cannot load local modules, so this
 * file imports only electron and types (erased): it compiles to one CommonJS file.
 */
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';
import type { CommandName, CommandParams, CommandResult, ControlApi, EventRecord } from '../contract/control.js';

const api: ControlApi = {
  call<C extends CommandName>(command: C, params: CommandParams<C>): Promise<CommandResult<C>> {
    return ipcRenderer.invoke('understudy:call', command, params) as Promise<CommandResult<C>>;
  },
  onEvent(listener: (event: EventRecord) => void): () => void {
    const forward = (_sender: IpcRendererEvent, event: EventRecord) => listener(event);
    ipcRenderer.on('understudy:event', forward);
    return () => ipcRenderer.off('understudy:event', forward);
  },
};

contextBridge.exposeInMainWorld('understudy', api);
