import { STATUS_CODES, createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { DEFAULT_REQUEST_HEAD_TIMEOUT_MS } from '../config/schema.ts';
import { meshError } from '../errors.ts';
import { writeRawError, type HttpHandler } from '../protocols/upgrade.ts';
import { ConnectionGate, type ConnectionGateOptions } from '../resilience/connection-limit.ts';
import type { Logger } from '../telemetry/logger.ts';
import { listen, waitUntil } from './listen.ts';

export interface HttpListenerOptions {
  readonly name: string;
  readonly maxRequestHeadBytes: number;
  /** Time a client has to send the whole request head; slower gets 408 (default 60 s). */
  readonly requestHeadTimeoutMs?: number;
  /** Client connections silent this long are closed; 0 disables. */
  readonly idleTimeoutMs: number;
  /** When set, the listener speaks TLS with these options (mTLS: requestCert + rejectUnauthorized). */
  readonly tls?: TlsOptions;
  /** Caps client connections served at once, queueing a bounded number more (HAProxy maxconn). */
  readonly connectionLimit?: ConnectionGateOptions | undefined;
  readonly log: Logger;
}

/** A request handler; one with `upgrade` also takes HTTP/1.1 Upgrades (WebSocket), else they get 400. */
type Handler = HttpHandler;

/** Whether an Upgrade request is tunnelled: no body to forward first, and not h2c (served as HTTP/1.1). */
function tunnels(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) return false;
  return !/^\s*h2c\s*$/i.test(req.headers.upgrade ?? '');
}

/**
 * An HTTP/1.1 (or HTTPS) listener that answers malformed requests itself (400, 431), counts requests in
 * flight, and drains: on close it stops accepting, lets in-flight requests finish, then cuts the rest.
 */
export class HttpListener {
  readonly name: string;
  readonly server: Server | HttpsServer;
  readonly #log: Logger;
  readonly #gate: ConnectionGate | undefined;
  /** Responses not yet closed; on drain, those whose head is unsent are told `connection: close`. */
  readonly #inFlight = new Set<ServerResponse>();
  /** Upgraded connections (WebSocket tunnels): kept across handler swaps, waited for on drain. */
  readonly #upgraded = new Set<Duplex>();
  /** Serves each new request; swapped by a hot reload while requests under way finish with the old one. */
  #handler: Handler;
  #closing = false;

  constructor(options: HttpListenerOptions, handler: Handler) {
    this.name = options.name;
    this.#log = options.log;
    this.#handler = handler;
    const headTimeoutMs = options.requestHeadTimeoutMs ?? DEFAULT_REQUEST_HEAD_TIMEOUT_MS;
    const serverOptions = {
      maxHeaderSize: options.maxRequestHeadBytes,
      // The proxy enforces its own timeouts; Node's 5-minute request timeout would cut long uploads.
      requestTimeout: 0,
      headersTimeout: headTimeoutMs,
      // Node checks head deadlines on this interval (30 s by default): often enough for the limit set.
      connectionsCheckingInterval: headTimeoutMs > 0 ? Math.max(100, Math.min(30_000, Math.floor(headTimeoutMs / 2))) : 30_000,
      keepAliveTimeout: 5_000,
      noDelay: true,
      // Upgrades (WebSocket) are tunnelled when the handler takes them; an upgrade request with a body, or
      // an h2c upgrade, is served as a plain HTTP/1.1 request (the server may ignore Upgrade, RFC 9110 7.8).
      shouldUpgradeCallback: (req: IncomingMessage) => this.#handler.upgrade !== undefined && tunnels(req),
    };
    const tracked: Handler = (req, res) => {
      this.#inFlight.add(res);
      res.once('close', () => this.#inFlight.delete(res));
      if (this.#closing) res.shouldKeepAlive = false;
      this.#handler(req, res);
    };
    this.server = options.tls ? createHttpsServer({ ...serverOptions, ...options.tls }, tracked) : createHttpServer(serverOptions, tracked);
    // Registered even when 0 (disabled), so `setHandler` can turn the idle timeout on later.
    this.server.setTimeout(options.idleTimeoutMs, (socket: Socket) => socket.destroy());
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => this.#onClientError(err, socket));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    this.#gate = options.connectionLimit && new ConnectionGate(this.server, options.connectionLimit);
    if (options.tls) this.server.on('tlsClientError', (err: Error, socket: Socket) => this.#log.warn({ listener: this.name, peer: socket.remoteAddress, err: err.message }, 'TLS handshake failed'));
  }

  /** Malformed requests never reach the proxy: answer them here, marked as Meshlet's. */
  #onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
    // A response already under way cannot be followed by an error response: cutting is the only signal.
    const current = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (!socket.writable || err.code === 'ECONNRESET' || current?.headersSent) {
      socket.destroy();
      return;
    }
    const error =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? meshError('HEADERS_TOO_LARGE', `request head larger than the limit on listener ${this.name}`)
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? meshError('REQUEST_TIMEOUT', `request head not received in time on listener ${this.name}`)
          : meshError('BAD_REQUEST', `malformed request on listener ${this.name}: ${err.code ?? err.message}`);
    this.#log.debug({ listener: this.name, peer: socket.remoteAddress, code: err.code }, 'rejected malformed request');
    const body = JSON.stringify({ error: error.reason, code: error.code, message: error.message });
    socket.end(
      `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\ncontent-type: application/json\r\n` +
        `content-length: ${Buffer.byteLength(body)}\r\nx-meshlet-error: ${error.reason}\r\nconnection: close\r\n\r\n${body}`,
    );
  }

  /** An Upgrade request: handed to the handler's `upgrade`, the connection tracked until it closes. */
  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const upgrade = this.#handler.upgrade;
    if (this.#closing || !upgrade) {
      const kind = this.#closing ? 'SHUTTING_DOWN' : 'BAD_REQUEST';
      writeRawError(socket, meshError(kind, this.#closing ? `listener ${this.name} is draining` : `listener ${this.name} does not take protocol upgrades`));
      return;
    }
    this.#upgraded.add(socket);
    socket.once('close', () => this.#upgraded.delete(socket));
    upgrade(req, socket, head);
  }

  /** The handler serving new requests (the HTTP proxy listener dispatches to it by Host). */
  get handler(): Handler {
    return this.#handler;
  }

  /** Upgraded connections (WebSocket tunnels) open now. */
  get upgraded(): number {
    return this.#upgraded.size;
  }

  /** Requests currently being served. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Binds and resolves with the bound port. */
  listen(port: number, address: string): Promise<number> {
    return listen(this.server, port, address, this.name);
  }

  /**
   * Serves requests from now on with `handler` (hot reload). Established connections stay open and
   * requests under way finish with the handler that started them; `idleTimeoutMs` applies to new connections.
   */
  setHandler(handler: Handler, idleTimeoutMs: number): void {
    this.#handler = handler;
    this.server.timeout = idleTimeoutMs;
  }

  /** Swaps the TLS credentials for new connections; established ones keep theirs. */
  setSecureContext(options: SecureContextOptions): void {
    (this.server as HttpsServer).setSecureContext(options);
  }

  /** Stops accepting, waits up to `drainMs` for in-flight requests, then closes every connection. */
  async close(drainMs: number): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    // Responses still to come close their connection, so clients do not reuse it as it goes away.
    for (const res of this.#inFlight) if (!res.headersSent) res.shouldKeepAlive = false;
    this.#gate?.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await waitUntil(() => {
      this.server.closeIdleConnections();
      return this.#inFlight.size === 0 && this.#upgraded.size === 0;
    }, drainMs);
    this.server.closeAllConnections();
    for (const socket of this.#upgraded) socket.destroy();
    await closed;
  }
}
