/**
 * An HTTP/2 listener (node:http2): cleartext h2c with prior knowledge, or TLS (inbound mTLS) with h2
 * negotiated by ALPN and HTTP/1.1 still accepted (`allowHTTP1`) for clients that do not offer h2. Counts
 * streams in flight and drains: on close it sends GOAWAY, lets streams under way finish, then cuts the rest.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createSecureServer, createServer, type Http2SecureServer, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { ConnectionGate, type ConnectionGateOptions } from '../resilience/connection-limit.ts';
import type { Logger } from '../telemetry/logger.ts';
import { listen, waitUntil } from './listen.ts';

export interface Http2ListenerOptions {
  readonly name: string;
  /** Largest request header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE). */
  readonly maxRequestHeadBytes: number;
  /** Sessions with no frames for this long are closed gracefully (streams under way finish); 0 disables. */
  readonly idleTimeoutMs: number;
  /** When set, the listener speaks TLS with these options (mTLS), offering h2 and http/1.1 by ALPN. */
  readonly tls?: TlsOptions | undefined;
  readonly connectionLimit?: ConnectionGateOptions | undefined;
  readonly log: Logger;
}

export type Http2Handler = (req: Http2ServerRequest | IncomingMessage, res: Http2ServerResponse | ServerResponse) => void;

export class Http2Listener {
  readonly name: string;
  readonly server: Http2Server | Http2SecureServer;
  readonly #log: Logger;
  readonly #gate: ConnectionGate | undefined;
  readonly #inFlight = new Set<Http2ServerResponse | ServerResponse>();
  readonly #sessions = new Set<Http2Session>();
  readonly #sockets = new Set<Socket>();
  #handler: Http2Handler;
  #idleTimeoutMs: number;
  #closing = false;

  constructor(options: Http2ListenerOptions, handler: Http2Handler) {
    this.name = options.name;
    this.#log = options.log;
    this.#handler = handler;
    this.#idleTimeoutMs = options.idleTimeoutMs;
    const settings = { maxHeaderListSize: options.maxRequestHeadBytes };
    const inFlight = this.#inFlight;
    // One 'close' listener function for every response (called with it as `this`), not a closure each.
    const untrack = function (this: Http2ServerResponse | ServerResponse) {
      inFlight.delete(this);
    };
    const tracked = (req: Http2ServerRequest | IncomingMessage, res: Http2ServerResponse | ServerResponse) => {
      inFlight.add(res);
      res.on('close', untrack);
      this.#handler(req, res);
    };
    this.server = options.tls
      ? createSecureServer({ ...options.tls, settings, allowHTTP1: true, ALPNProtocols: ['h2', 'http/1.1'] }, tracked as never)
      : createServer({ settings }, tracked as never);
    this.server.on('session', (session: Http2Session) => {
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
      // A client that resets or breaks the protocol must not take the process with it.
      session.on('error', (err: Error) => this.#log.debug({ listener: this.name, err: err.message }, 'HTTP/2 session error'));
      if (this.#closing) session.close();
      else if (this.#idleTimeoutMs > 0) session.setTimeout(this.#idleTimeoutMs, () => session.close());
    });
    this.server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.server.on('sessionError', (err: Error) => this.#log.debug({ listener: this.name, err: err.message }, 'HTTP/2 session error'));
    if (options.tls) this.server.on('tlsClientError', (err: Error, socket: Socket) => this.#log.warn({ listener: this.name, peer: socket.remoteAddress, err: err.message }, 'TLS handshake failed'));
    this.#gate = options.connectionLimit && new ConnectionGate(this.server, options.connectionLimit);
  }

  /** Requests (streams) currently being served. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  listen(port: number, address: string): Promise<number> {
    return listen(this.server, port, address, this.name);
  }

  /** Serves new requests with `handler` (hot reload); streams under way finish with the old one. */
  setHandler(handler: Http2Handler, idleTimeoutMs?: number): void {
    this.#handler = handler;
    if (idleTimeoutMs !== undefined) this.#idleTimeoutMs = idleTimeoutMs;
  }

  /** Swaps the TLS credentials for new connections; established ones keep theirs. */
  setSecureContext(options: SecureContextOptions): void {
    (this.server as Http2SecureServer).setSecureContext(options);
  }

  /** Stops accepting, sends GOAWAY, waits up to `drainMs` for streams in flight, then closes every connection. */
  async close(drainMs: number): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    this.#gate?.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.#sessions) session.close();
    await waitUntil(() => this.#inFlight.size === 0, drainMs);
    for (const session of this.#sessions) session.destroy();
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }
}
