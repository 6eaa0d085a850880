/**
 * Connection limits for a listener (HAProxy `maxconn`): at most `maxConnections` client connections are
 * served at once; the next `acceptQueue` wait unread in a FIFO (their bytes stay in the socket buffer)
 * until a slot frees or `queueTimeout` passes; beyond that a connection is closed at once. Installed in
 * front of a server's own connection handling, before any TLS handshake or HTTP parsing.
 */
import type { Server, Socket } from 'node:net';
import type { ConnectionLimitConfig } from './rate-limit-config.ts';

export interface ConnectionGateOptions extends ConnectionLimitConfig {
  /** Called for each connection closed because the queue was full or the wait too long. */
  readonly onRefused?: (reason: 'queue_full' | 'queue_timeout', peer: string | undefined) => void;
}

interface Queued {
  readonly socket: Socket;
  readonly timer: NodeJS.Timeout;
}

export class ConnectionGate {
  readonly #options: ConnectionGateOptions;
  readonly #serve: (socket: Socket) => void;
  readonly #queue: Queued[] = [];
  #active = 0;

  /** Takes over `server`'s `connection` listeners; they now run only for admitted connections. */
  constructor(server: Server, options: ConnectionGateOptions) {
    this.#options = options;
    const handlers = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    this.#serve = (socket) => {
      for (const handler of handlers) handler.call(server, socket);
    };
    server.on('connection', (socket: Socket) => this.#admit(socket));
  }

  /** Connections being served. */
  get active(): number {
    return this.#active;
  }

  /** Connections waiting for a slot. */
  get queued(): number {
    return this.#queue.length;
  }

  #admit(socket: Socket): void {
    if (this.#active < this.#options.maxConnections) return this.#start(socket);
    if (this.#queue.length >= this.#options.acceptQueue) return this.#refuse(socket, 'queue_full');
    const entry: Queued = {
      socket,
      timer: setTimeout(() => {
        this.#remove(entry);
        this.#refuse(socket, 'queue_timeout');
      }, this.#options.queueTimeout),
    };
    // A queued client that gives up leaves the queue.
    socket.once('close', () => {
      if (this.#remove(entry)) clearTimeout(entry.timer);
    });
    socket.on('error', () => {});
    this.#queue.push(entry);
  }

  #start(socket: Socket): void {
    this.#active++;
    socket.once('close', () => {
      this.#active--;
      this.#next();
    });
    this.#serve(socket);
  }

  #next(): void {
    const entry = this.#queue.shift();
    if (!entry) return;
    clearTimeout(entry.timer);
    this.#start(entry.socket);
  }

  #remove(entry: Queued): boolean {
    const i = this.#queue.indexOf(entry);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    return true;
  }

  #refuse(socket: Socket, reason: 'queue_full' | 'queue_timeout'): void {
    this.#options.onRefused?.(reason, socket.remoteAddress);
    socket.on('error', () => {});
    socket.destroy();
  }

  /** Closes every queued connection (on listener close). */
  close(): void {
    for (const entry of this.#queue.splice(0)) {
      clearTimeout(entry.timer);
      entry.socket.destroy();
    }
  }
}
