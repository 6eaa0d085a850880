import { Buffer } from 'node:buffer';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../node-http.ts';
import type { Logger } from '../telemetry/logger.ts';
import { listen } from '../listeners/listen.ts';
import { browserGuardRefusal } from './browser-guard.ts';

export type AdminHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

/** Sends a JSON response. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** A tiny router for the admin API; features register their own routes. */
export class AdminServer {
  readonly server: Server;
  readonly #routes = new Map<string, AdminHandler>();
  readonly #log: Logger;
  /** Set when bound to a loopback address: then only loopback Host names are answered. */
  #loopbackOnly = false;

  constructor(log: Logger) {
    this.#log = log;
    this.server = createServer((req, res) => void this.#dispatch(req, res));
  }

  /** Registers `handler` for `METHOD /path`. */
  route(method: string, path: string, handler: AdminHandler): void {
    this.#routes.set(`${method} ${path}`, handler);
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const refusal = browserGuardRefusal(req.method, req.headers, this.#loopbackOnly);
    if (refusal) {
      this.#log.warn({ path: url.pathname, host: req.headers.host, origin: req.headers.origin }, 'admin request from a browser context refused');
      sendJson(res, 403, { error: refusal });
      return;
    }
    const handler = this.#routes.get(`${req.method} ${url.pathname}`) ?? this.#prefixRoute(req.method, url.pathname);
    if (!handler) {
      const allowed = [...this.#routes.keys()].filter((k) => k.endsWith(` ${url.pathname}`));
      if (allowed.length > 0) sendJson(res, 405, { error: `method ${req.method} not allowed on ${url.pathname}` });
      else sendJson(res, 404, { error: `no admin route ${url.pathname}`, routes: [...this.#routes.keys()].sort() });
      return;
    }
    try {
      await handler(req, res, url);
    } catch (err) {
      this.#log.error({ err, path: url.pathname }, 'admin handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: (err as Error).message });
      else res.destroy();
    }
  }

  /** A route registered as `METHOD /prefix/*` matches any longer path under `/prefix/` (e.g. `/traces/<id>`). */
  #prefixRoute(method: string | undefined, pathname: string): AdminHandler | undefined {
    const slash = pathname.lastIndexOf('/');
    return slash > 0 ? this.#routes.get(`${method} ${pathname.slice(0, slash)}/*`) : undefined;
  }

  listen(port: number, address: string): Promise<number> {
    this.#loopbackOnly = isLoopback(address) || address === 'localhost';
    return listen(this.server, port, address, 'admin');
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

/** Whether a peer address is this host's loopback (IPv4 127/8, ::1, or IPv4-mapped 127/8). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

const SECRET_KEY = /token|secret|password|passphrase|private|^key$/i;

/** Deep copy with every secret-looking field replaced, for showing config over the admin API. */
export function redactSecrets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactSecrets);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null ? '[redacted]' : redactSecrets(v);
    return out;
  }
  return value;
}
