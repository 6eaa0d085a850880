import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type SecureContextOptions, type Server as TlsServer, type TlsOptions } from 'node:tls';
import { DEFAULT_REQUEST_HEAD_TIMEOUT_MS } from '../config/schema.ts';
import { meshError } from '../errors.ts';
import { writeRawError, type HttpHandler } from '../protocols/upgrade.ts';
import { WireConnection, type WireServerOptions } from '../protocols/wire/server-connection.ts';
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

/** How long a keep-alive connection may wait for its next request (node:http's default). */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;

/**
 * An HTTP/1.1 (or HTTPS) listener on raw sockets (protocols/wire): each connection is parsed with llhttp
 * and answered without node:http's per-request streams. It answers malformed requests itself (400, 431,
 * 408), counts requests in flight, and drains: on close it stops accepting, lets in-flight requests
 * finish, then cuts the rest.
 */
export class HttpListener {
  readonly name: string;
  readonly server: Server | TlsServer;
  readonly #log: Logger;
  readonly #gate: ConnectionGate | undefined;
  /** Connections served as HTTP; one that upgrades leaves for #upgraded. */
  readonly #connections = new Map<Socket, WireConnection>();
  /** Upgraded connections (WebSocket tunnels): kept across handler swaps, waited for on drain. */
  readonly #upgraded = new Set<Socket>();
  readonly #maxRequestHeadBytes: number;
  readonly #headTimeoutMs: number;
  /** Serves each new request; swapped by a hot reload while requests under way finish with the old one. */
  #handler: HttpHandler;
  #wireOptions: WireServerOptions;
  #closing = false;

  constructor(options: HttpListenerOptions, handler: HttpHandler) {
    this.name = options.name;
    this.#log = options.log;
    this.#handler = handler;
    this.#maxRequestHeadBytes = options.maxRequestHeadBytes;
    this.#headTimeoutMs = options.requestHeadTimeoutMs ?? DEFAULT_REQUEST_HEAD_TIMEOUT_MS;
    this.#wireOptions = this.#buildOptions(options.idleTimeoutMs);
    const serve = (socket: Socket) => {
      const connection = new WireConnection(socket, this.#wireOptions);
      this.#connections.set(socket, connection);
      socket.once('close', () => this.#connections.delete(socket));
      if (this.#closing) connection.closeWhenIdle();
    };
    const serverOptions = { noDelay: true };
    this.server = options.tls ? createTlsServer({ ...serverOptions, ...options.tls }, serve) : createServer(serverOptions, serve);
    this.#gate = options.connectionLimit && new ConnectionGate(this.server, options.connectionLimit);
    if (options.tls) this.server.on('tlsClientError', (err: Error, socket: Socket) => this.#log.warn({ listener: this.name, peer: socket.remoteAddress, err: err.message }, 'TLS handshake failed'));
  }

  #buildOptions(idleTimeoutMs: number): WireServerOptions {
    const handler = this.#handler;
    return {
      name: this.name,
      maxRequestHeadBytes: this.#maxRequestHeadBytes,
      headTimeoutMs: this.#headTimeoutMs,
      keepAliveTimeoutMs: KEEP_ALIVE_TIMEOUT_MS,
      idleTimeoutMs,
      onRequest: handler,
      // Without an upgrade handler, Upgrade requests are served as plain requests (RFC 9110 7.8 allows ignoring it).
      onUpgrade: handler.upgrade && ((req, socket, head) => this.#onUpgrade(req, socket, head)),
    };
  }

  /** An Upgrade request: handed to the handler's `upgrade`, the connection tracked until it closes. */
  #onUpgrade(...[req, socket, head]: Parameters<NonNullable<WireServerOptions['onUpgrade']>>): void {
    const upgrade = this.#handler.upgrade;
    if (this.#closing || !upgrade) {
      const kind = this.#closing ? 'SHUTTING_DOWN' : 'BAD_REQUEST';
      writeRawError(socket, meshError(kind, this.#closing ? `listener ${this.name} is draining` : `listener ${this.name} does not take protocol upgrades`));
      return;
    }
    // A tunnel is no longer an HTTP connection: drain must not close it as idle.
    this.#connections.delete(socket);
    this.#upgraded.add(socket);
    socket.once('close', () => this.#upgraded.delete(socket));
    upgrade(req, socket, head);
  }

  /** The handler serving new requests (the HTTP proxy listener dispatches to it by Host). */
  get handler(): HttpHandler {
    return this.#handler;
  }

  /** Upgraded connections (WebSocket tunnels) open now. */
  get upgraded(): number {
    return this.#upgraded.size;
  }

  /** Requests currently being served. */
  get inFlight(): number {
    let n = 0;
    for (const connection of this.#connections.values()) n += connection.inFlight;
    return n;
  }

  /** Binds and resolves with the bound port. */
  listen(port: number, address: string): Promise<number> {
    return listen(this.server, port, address, this.name);
  }

  /**
   * Serves requests from now on with `handler` (hot reload). Established connections stay open and
   * requests under way finish with the handler that started them; `idleTimeoutMs` applies from now on.
   */
  setHandler(handler: HttpHandler, idleTimeoutMs: number): void {
    this.#handler = handler;
    this.#wireOptions = this.#buildOptions(idleTimeoutMs);
    for (const connection of this.#connections.values()) connection.setOptions(this.#wireOptions);
  }

  /** Swaps the TLS credentials for new connections; established ones keep theirs. */
  setSecureContext(options: SecureContextOptions): void {
    (this.server as TlsServer).setSecureContext(options);
  }

  /** Stops accepting, waits up to `drainMs` for in-flight requests, then closes every connection. */
  async close(drainMs: number): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#gate?.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // Responses still to come close their connection, so clients do not reuse it as it goes away.
    for (const connection of this.#connections.values()) connection.closeWhenIdle();
    await waitUntil(() => this.#connections.size === 0 && this.#upgraded.size === 0, drainMs);
    for (const connection of this.#connections.values()) connection.destroy();
    for (const socket of this.#upgraded) socket.destroy();
    await closed;
  }
}
