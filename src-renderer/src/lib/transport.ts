/**
 * The one way the renderer reaches the engine: the control contract (ControlApi), over the
 * Electron preload bridge when there is one, else over the web console's WebSocket. Nothing
 * else in the renderer knows which it has.
 */
import type { CommandName, CommandParams, CommandResult, ControlApi, ControlReply, EventRecord } from '../../../src-main/contract/control';

/** A command the engine refused or that failed: its code, its sentence, what to do. */
export class ControlError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly hint: string | undefined,
  ) {
    super(message);
  }

  /** The one line shown to a person. */
  get line(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message;
  }
}

declare global {
  interface Window {
    /** Set by the Electron preload: the same contract, over IPC. */
    understudy?: ControlApi;
  }
}

/** The preload's API when running in the desktop app; null in a browser. */
export function preloadApi(): ControlApi | null {
  return window.understudy ?? null;
}

/**
 * Logs in to the web console: trades the token in the URL's fragment (never sent to any
 * server by the browser) for a session cookie, and clears it from the address bar.
 * Returns false when there is no valid session (the page says what to do).
 */
export async function webLogin(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (token) {
    history.replaceState(null, '', location.pathname + location.search);
    const response = await fetch('/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    if (response.status !== 204) {
      const body = (await response.json().catch(() => ({}))) as { error?: string };
      return { ok: false, reason: body.error ?? `login refused (${response.status})` };
    }
    return { ok: true };
  }
  const check = await fetch('/api/session/check');
  return check.status === 204 ? { ok: true } : { ok: false, reason: "open the console with the link 'understudy console-url --home DIR' prints" };
}

/** The control contract over the console's WebSocket; reconnects by itself when the node comes back. */
export class WebSocketControl implements ControlApi {
  private socket: WebSocket | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  private readonly listeners = new Set<(event: EventRecord) => void>();
  private readonly stateListeners = new Set<(connected: boolean) => void>();
  private opening: Promise<WebSocket> | null = null;

  constructor(private readonly url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/control`) {}

  onConnection(listener: (connected: boolean) => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  private open(): Promise<WebSocket> {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) return Promise.resolve(this.socket);
    this.opening ??= new Promise<WebSocket>((resolve, reject) => {
      const socket = new WebSocket(this.url);
      socket.onopen = () => {
        this.socket = socket;
        this.opening = null;
        for (const listener of this.stateListeners) listener(true);
        // Events are pushed only to a connection that subscribed.
        if (this.listeners.size > 0) void this.call('events:subscribe', {});
        resolve(socket);
      };
      socket.onerror = () => {
        this.opening = null;
        reject(new ControlError('unreachable', 'the node does not answer', 'check that it runs'));
      };
      socket.onclose = () => {
        this.socket = null;
        this.opening = null;
        for (const { reject: fail } of this.pending.values()) fail(new ControlError('unreachable', 'the connection to the node closed', 'it reconnects by itself'));
        this.pending.clear();
        for (const listener of this.stateListeners) listener(false);
      };
      socket.onmessage = (message) => this.receive(String(message.data));
    });
    return this.opening;
  }

  private receive(text: string): void {
    const reply = JSON.parse(text) as ControlReply;
    if ('event' in reply) {
      for (const listener of this.listeners) listener(reply.event);
      return;
    }
    const waiter = this.pending.get(reply.id);
    if (!waiter) return;
    this.pending.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.result);
    else waiter.reject(new ControlError(reply.error.code, reply.error.message, reply.error.hint));
  }

  async call<C extends CommandName>(command: C, params: CommandParams<C>): Promise<CommandResult<C>> {
    const socket = await this.open();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: (value) => resolve(value as CommandResult<C>), reject });
      socket.send(JSON.stringify({ id, command, params }));
    });
  }

  onEvent(listener: (event: EventRecord) => void): () => void {
    this.listeners.add(listener);
    if (this.listeners.size === 1) void this.call('events:subscribe', {}).catch(() => undefined);
    return () => this.listeners.delete(listener);
  }
}
