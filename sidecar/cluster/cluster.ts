import { connect as netConnect, type OnReadOpts, type Socket } from 'node:net';
import type { Picker, PickContext } from '../balancer/types.ts';
import type { Endpoint } from '../discovery/types.ts';
import { WirePool } from '../protocols/wire/upstream-pool.ts';
import type { Logger } from '../telemetry/logger.ts';
import { EndpointState } from './endpoint-state.ts';

/** How connections to an endpoint are opened; the security layer swaps in mTLS here. */
export interface ClusterTransport {
  /** `https` when connections are TLS (mTLS to peer sidecars); plain `http` otherwise. */
  readonly scheme: 'http' | 'https';
  /**
   * Opens a stream to the endpoint (plain TCP, or TLS for mTLS peers) for HTTP/1.1 pools and L4 proxying;
   * `alpn` is offered over TLS (HTTP/2: `h2`); `onread` (the HTTP/1.1 pool's) replaces 'data' events.
   */
  openSocket(endpoint: Endpoint, alpn?: readonly string[], onread?: OnReadOpts): Socket;
}

export const PLAINTEXT_TRANSPORT: ClusterTransport = {
  scheme: 'http',
  openSocket: (endpoint, _alpn, onread) => netConnect({ host: endpoint.address, port: endpoint.port, allowHalfOpen: true, noDelay: true, ...(onread ? { onread } : {}) }),
};

export interface ClusterOptions {
  /** Upstream name, used in logs, metrics and errors. */
  readonly name: string;
  /** Discovered service name. */
  readonly service: string;
  readonly picker: Picker;
  readonly connectTimeoutMs: number;
  readonly poolIdleMs: number;
  readonly maxConnectionsPerEndpoint: number;
  readonly transport?: ClusterTransport;
  readonly log: Logger;
}

/** The endpoints of one upstream, their live state, their connection pools and the picker over them. */
export class Cluster {
  readonly name: string;
  readonly service: string;
  #options: ClusterOptions;
  #states: EndpointState[] = [];
  readonly #pools = new Map<string, WirePool>();
  #transport: ClusterTransport;
  /** Set once discovery delivered anything, so "no endpoints" can be told from "not known yet". */
  discovered = false;
  /**
   * Other per-endpoint connection holders (HTTP/2 sessions, protocols/h2-sessions.ts), reset like the
   * pools: one key when its endpoint goes, all when the transport or limits change, closed with the cluster.
   */
  readonly attachments: Array<{ reset(key?: string): void; close(): Promise<void>; destroy(): void }> = [];

  constructor(options: ClusterOptions) {
    this.name = options.name;
    this.service = options.service;
    this.#options = options;
    this.#transport = options.transport ?? PLAINTEXT_TRANSPORT;
  }

  /** All endpoints with their state (available or not). */
  get endpoints(): readonly EndpointState[] {
    return this.#states;
  }

  /** Applies a new endpoint set, keeping the state (and pooled connections) of endpoints that remain. */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.discovered = true;
    const previous = new Map(this.#states.map((s) => [s.key, s]));
    const next: EndpointState[] = [];
    for (const ep of endpoints) {
      const existing = previous.get(ep.key);
      if (existing) {
        existing.endpoint = ep;
        previous.delete(ep.key);
        next.push(existing);
      } else {
        next.push(new EndpointState(ep));
      }
    }
    for (const gone of previous.values()) {
      this.#closePool(gone.key);
      for (const a of this.attachments) a.reset(gone.key);
    }
    this.#states = next;
    this.#options.picker.update(next);
  }

  /** Picks an available endpoint, or undefined when none can take traffic. */
  pick(ctx: PickContext, now = Date.now()): EndpointState | undefined {
    const states = this.#states;
    let available: EndpointState[] | undefined;
    for (let i = 0; i < states.length; i++) {
      if (states[i]!.isAvailable(now)) continue;
      // Slow path only when something is unavailable: most picks see a fully healthy set.
      available = states.filter((s) => s.isAvailable(now));
      break;
    }
    const candidates = available ?? states;
    if (candidates.length === 0) return undefined;
    return this.#options.picker.pick(candidates, ctx);
  }

  /** The HTTP/1.1 connection pool for an endpoint, created on first use. */
  pool(state: EndpointState): WirePool {
    let pool = this.#pools.get(state.key);
    if (!pool) {
      const transport = this.#transport;
      const endpoint = state.endpoint;
      pool = new WirePool({
        connect: (onread) => transport.openSocket(endpoint, undefined, onread),
        peer: `${this.name}@${state.key}`,
        connectTimeoutMs: this.#options.connectTimeoutMs,
        idleTimeoutMs: this.#options.poolIdleMs,
        maxConnections: this.#options.maxConnectionsPerEndpoint,
      });
      this.#pools.set(state.key, pool);
    }
    return pool;
  }

  /** Opens an L4 stream to an endpoint with the cluster's transport. */
  openSocket(state: EndpointState, alpn?: readonly string[]): Socket {
    return this.#transport.openSocket(state.endpoint, alpn);
  }

  /**
   * Applies new settings (hot reload of a changed upstream): endpoint state (health, ejections, active
   * counts) stays and the new picker takes over. Pools are kept unless their limits changed; then they
   * are reopened with the new ones while requests under way finish on the old ones.
   */
  reconfigure(options: Partial<Pick<ClusterOptions, 'picker' | 'connectTimeoutMs' | 'poolIdleMs' | 'maxConnectionsPerEndpoint'>>): void {
    const before = this.#options;
    this.#options = { ...before, ...options };
    if (options.picker) options.picker.update(this.#states);
    const { connectTimeoutMs, poolIdleMs, maxConnectionsPerEndpoint } = this.#options;
    if (connectTimeoutMs === before.connectTimeoutMs && poolIdleMs === before.poolIdleMs && maxConnectionsPerEndpoint === before.maxConnectionsPerEndpoint) return;
    for (const key of [...this.#pools.keys()]) this.#closePool(key);
    for (const a of this.attachments) a.reset();
  }

  /** Switches how new connections are made (e.g. after a certificate rotation); existing pools drain. */
  setTransport(transport: ClusterTransport): void {
    this.#transport = transport;
    for (const key of [...this.#pools.keys()]) this.#closePool(key);
    for (const a of this.attachments) a.reset();
  }

  #closePool(key: string): void {
    const pool = this.#pools.get(key);
    if (!pool) return;
    this.#pools.delete(key);
    // close() lets in-flight requests finish; new requests get a fresh pool.
    pool.close().catch((err: unknown) => this.#options.log.debug({ err, endpoint: key }, 'pool close failed'));
  }

  /** Closes every pool, waiting for in-flight requests. */
  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled([...pools.map((p) => p.close()), ...this.attachments.map((a) => a.close())]);
  }

  /** Immediately destroys every pooled connection. */
  async destroy(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    for (const a of this.attachments) a.destroy();
    await Promise.allSettled(pools.map((p) => p.destroy()));
  }
}
