/**
 * The web console: every running node serves the renderer on 127.0.0.1 (default port 7421)
 * and the control contract over a WebSocket, for servers without a desktop. Behind a login
 * token (console-token.ts): the page trades it for an HttpOnly, SameSite=Strict session
 * cookie. Host and Origin are checked on every request and upgrade, so another site open in
 * the same browser (or a DNS-rebinding one) can neither read the console nor drive the node.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { extname, join, normalize, sep } from 'node:path';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ControlReply, EventRecord } from '../../contract/control.js';
import { dispatchRequest, type CommandHandler } from '../control/dispatch.js';
import { tokensEqual } from './console-token.js';

/** @default 7421 */
export const DefaultConsolePort = 7421;
const SessionCookie = 'understudy_session';
/** A session lasts this long without use. @default 12 hours */
const SessionIdleMs = 12 * 3600_000;
const MaxRequestBytes = 64 * 1024;
/** Failed token trades allowed per minute (guessing a 256-bit token is hopeless; this keeps logs calm). */
const MaxFailuresPerMinute = 10;

const ContentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

export interface ConsoleOptions {
  host: string;
  port: number;
  /** The built renderer (src-renderer/dist). */
  staticDir: string;
  token: string;
  handle: CommandHandler;
  log: Logger;
}

export class ConsoleServer {
  private server: Server | null = null;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MaxRequestBytes });
  private readonly sessions = new Map<string, number>();
  private readonly subscribers = new Set<WebSocket>();
  private failures: number[] = [];
  private boundPort = 0;

  constructor(private readonly options: ConsoleOptions) {}

  /** The port it listens on (the one asked for, or the one the OS chose for 0). */
  get port(): number {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const server = createServer((request, response) => void this.serveHttp(request, response));
    server.on('upgrade', (request, socket, head) => this.upgrade(request, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => resolve());
    });
    this.server = server;
    const address = server.address();
    this.boundPort = typeof address === 'object' && address ? address.port : this.options.port;
  }

  async stop(): Promise<void> {
    for (const client of this.wss.clients) client.terminate();
    this.wss.close();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  broadcast(event: EventRecord): void {
    const text = JSON.stringify({ event } satisfies ControlReply);
    for (const client of this.subscribers) client.send(text);
  }

  /** Requests must name this console as their host: a page on another site that resolves to 127.0.0.1 (DNS rebinding) does not. */
  private hostAllowed(request: IncomingMessage): boolean {
    const host = request.headers.host;
    return host === `127.0.0.1:${this.boundPort}` || host === `localhost:${this.boundPort}`;
  }

  /** Whatever changes something must come from the console's own page. */
  private originAllowed(request: IncomingMessage): boolean {
    const origin = request.headers.origin;
    return origin === `http://127.0.0.1:${this.boundPort}` || origin === `http://localhost:${this.boundPort}`;
  }

  private session(request: IncomingMessage): boolean {
    const cookie = request.headers.cookie ?? '';
    const id = cookie
      .split(';')
      .map((part) => part.trim().split('='))
      .find(([name]) => name === SessionCookie)?.[1];
    if (!id) return false;
    const expires = this.sessions.get(id);
    if (expires === undefined || expires < Date.now()) {
      this.sessions.delete(id);
      return false;
    }
    this.sessions.set(id, Date.now() + SessionIdleMs);
    return true;
  }

  private async serveHttp(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const send = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...securityHeaders(this.boundPort) });
      response.end(body);
    };
    if (!this.hostAllowed(request)) return send(421, 'This console answers only as 127.0.0.1 or localhost.');
    const url = new URL(request.url ?? '/', `http://${request.headers.host}`);
    if (url.pathname === '/api/session') {
      if (request.method !== 'POST') return send(405, 'POST only');
      if (!this.originAllowed(request)) return send(403, 'Cross-origin requests are refused.');
      return this.tradeToken(request, response, send);
    }
    if (url.pathname === '/api/session/check') return send(this.session(request) ? 204 : 401, '');
    if (request.method !== 'GET' && request.method !== 'HEAD') return send(405, 'GET only');
    this.serveFile(url.pathname, response, send);
  }

  private async tradeToken(request: IncomingMessage, response: ServerResponse, send: (status: number, body: string, type?: string) => void): Promise<void> {
    const now = Date.now();
    this.failures = this.failures.filter((at) => now - at < 60_000);
    if (this.failures.length >= MaxFailuresPerMinute) return send(429, JSON.stringify({ error: 'too many failed logins: wait a minute' }), 'application/json');
    let body = '';
    for await (const chunk of request) {
      body += String(chunk);
      if (body.length > 4096) return send(413, 'too large');
    }
    let token = '';
    try {
      token = String((JSON.parse(body) as { token?: unknown }).token ?? '');
    } catch {
      token = '';
    }
    if (!tokensEqual(token, this.options.token)) {
      this.failures.push(now);
      this.options.log.warn({ remote: request.socket.remoteAddress }, 'console login refused: wrong token');
      return send(401, JSON.stringify({ error: "the link's token is wrong or old: run 'understudy console-url' again" }), 'application/json');
    }
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(id, now + SessionIdleMs);
    response.writeHead(204, { 'set-cookie': `${SessionCookie}=${id}; HttpOnly; SameSite=Strict; Path=/`, 'cache-control': 'no-store', ...securityHeaders(this.boundPort) });
    response.end();
  }

  private serveFile(pathname: string, response: ServerResponse, send: (status: number, body: string, type?: string) => void): void {
    const root = this.options.staticDir;
    const relative = normalize(decodeURIComponent(pathname)).replace(/^(\.\.(\/|\\|$))+/, '');
    let path = join(root, relative);
    if (!path.startsWith(root + sep) && path !== root) return send(404, 'not found');
    if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'index.html');
    // The app routes by itself: an unknown path that is not a file gets the app.
    if (!existsSync(path)) path = join(root, 'index.html');
    if (!existsSync(path)) return send(503, 'The console is not built: run `npm run build` (it builds src-renderer).');
    response.writeHead(200, {
      'content-type': ContentTypes[extname(path)] ?? 'application/octet-stream',
      'cache-control': extname(path) === '.html' ? 'no-store' : 'max-age=3600',
      ...securityHeaders(this.boundPort),
    });
    createReadStream(path).pipe(response);
  }

  private upgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(request.url ?? '/', 'http://console');
    if (url.pathname !== '/api/control' || !this.hostAllowed(request) || !this.originAllowed(request) || !this.session(request)) {
      socket.end('HTTP/1.1 403 Forbidden\r\nconnection: close\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(request, socket, head, (client) => this.serveClient(client));
  }

  private serveClient(client: WebSocket): void {
    client.on('close', () => this.subscribers.delete(client));
    client.on('error', () => client.terminate());
    client.on('message', (data) => {
      void dispatchRequest(this.options.handle, String(data), this.options.log).then(({ reply, subscribed }) => {
        if (subscribed) this.subscribers.add(client);
        if (client.readyState === client.OPEN) client.send(JSON.stringify(reply));
      });
    });
  }
}

function securityHeaders(port: number): Record<string, string> {
  return {
    'content-security-policy': `default-src 'self'; connect-src 'self' ws://127.0.0.1:${port} ws://localhost:${port}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'`,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };
}
