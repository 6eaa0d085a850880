import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type SecureContextOptions, type TlsOptions } from 'node:tls';
import { ConnectionGate, type ConnectionGateOptions } from '../resilience/connection-limit.ts';
import type { Logger } from '../telemetry/logger.ts';
import { listen, waitUntil } from './listen.ts';

/** An L4 listener that keeps half-open connections and drains on close. */
export class TcpListener {
  readonly name: string;
  readonly server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #gate: ConnectionGate | undefined;
  /** Serves each new connection; swapped by a hot reload while established pipes carry on. */
  #handler: (socket: Socket) => void;

  constructor(name: string, handler: (socket: Socket) => void, log: Logger, tls?: TlsOptions, connectionLimit?: ConnectionGateOptions) {
    this.name = name;
    this.#handler = handler;
    const track = (socket: Socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      this.#handler(socket);
    };
    const options = { allowHalfOpen: true, pauseOnConnect: true, noDelay: true };
    this.server = tls ? createTlsServer({ ...options, ...tls }, track) : createServer(options, track);
    this.#gate = connectionLimit && new ConnectionGate(this.server, connectionLimit);
    if (tls) this.server.on('tlsClientError', (err: Error, socket: Socket) => log.warn({ listener: name, peer: socket.remoteAddress, err: err.message }, 'TLS handshake failed'));
  }

  get connections(): number {
    return this.#sockets.size;
  }

  listen(port: number, address: string): Promise<number> {
    return listen(this.server, port, address, this.name);
  }

  /** Serves new connections with `handler` (hot reload); established ones keep their pipe. */
  setHandler(handler: (socket: Socket) => void): void {
    this.#handler = handler;
  }

  /** Swaps TLS credentials for new connections. */
  setSecureContext(options: SecureContextOptions): void {
    (this.server as unknown as { setSecureContext(o: SecureContextOptions): void }).setSecureContext(options);
  }

  /** Stops accepting, waits up to `drainMs` for open connections to finish, then destroys the rest. */
  async close(drainMs: number): Promise<void> {
    this.#gate?.close();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await waitUntil(() => this.#sockets.size === 0, drainMs);
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }
}
