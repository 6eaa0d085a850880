/**
 * HTTP/2 client sessions to a cluster's endpoints: one multiplexed session per endpoint, opened over
 * the cluster's transport (plain TCP: h2c with prior knowledge; mTLS: h2 negotiated by ALPN), dropped
 * on GOAWAY, error or close, and closed after `idleMs` without activity. node:http2 rather than undici
 * because gRPC needs response trailers, trailers-only responses and full-duplex streams end to end.
 */
import { connect, type ClientHttp2Session } from 'node:http2';
import { TLSSocket } from 'node:tls';
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_POOL_IDLE_MS } from '../config/schema.ts';
import { MeshletError, meshError } from '../errors.ts';

export interface H2SessionOptions {
  readonly connectTimeoutMs: number;
  /** A session with no activity this long is closed (streams under way finish first). */
  readonly idleMs: number;
}

interface Entry {
  readonly session: ClientHttp2Session;
  readonly ready: Promise<ClientHttp2Session>;
  readonly tls: boolean;
  /** Set once the session is established; `connected()` hands such an entry out as it is. */
  established: boolean;
}

/** A connected session and whether it runs over TLS (for `:scheme`). */
export interface H2Connection {
  readonly session: ClientHttp2Session;
  readonly tls: boolean;
}

export class H2Sessions {
  readonly #cluster: Cluster;
  #options: H2SessionOptions;
  readonly #entries = new Map<string, Entry>();

  constructor(cluster: Cluster, options: H2SessionOptions) {
    this.#cluster = cluster;
    this.#options = options;
  }

  /** Updates timeouts for sessions opened from now on. */
  configure(options: H2SessionOptions): void {
    this.#options = options;
  }

  /** The endpoint's session if it is established and usable now, else null (then `get` connects it). */
  connected(state: EndpointState): H2Connection | null {
    const entry = this.#entries.get(state.key);
    return entry !== undefined && entry.established && !entry.session.closed && !entry.session.destroyed ? entry : null;
  }

  /** The endpoint's session, connecting it first when needed; rejects with UPSTREAM_CONNECT. */
  async get(state: EndpointState): Promise<H2Connection> {
    let entry = this.#entries.get(state.key);
    if (!entry || entry.session.closed || entry.session.destroyed) {
      entry = this.#open(state);
      this.#entries.set(state.key, entry);
    }
    return { session: await entry.ready, tls: entry.tls };
  }

  #open(state: EndpointState): Entry {
    const { key } = state;
    const peer = `${this.#cluster.name}@${key}`;
    const socket = this.#cluster.openSocket(state, ['h2']);
    const tls = socket instanceof TLSSocket;
    const host = state.endpoint.address.includes(':') ? `[${state.endpoint.address}]` : state.endpoint.address;
    const session = connect(`${tls ? 'https' : 'http'}://${host}:${state.endpoint.port}`, { createConnection: () => socket });
    const forget = () => {
      if (this.#entries.get(key)?.session === session) this.#entries.delete(key);
    };
    // A session going away takes no new streams; the next request opens a fresh one.
    session.once('goaway', forget);
    session.once('close', forget);
    session.on('error', forget);
    const { promise: ready, resolve, reject } = Promise.withResolvers<ClientHttp2Session>();
    const entry: Entry = { session, ready, tls, established: false };
    const timer = setTimeout(() => {
      session.destroy();
      reject(meshError('UPSTREAM_CONNECT', `cannot connect to ${peer}: no HTTP/2 session within ${this.#options.connectTimeoutMs} ms`));
    }, this.#options.connectTimeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      forget();
      if (err instanceof MeshletError) reject(err);
      else {
        const code = (err as NodeJS.ErrnoException).code;
        reject(meshError('UPSTREAM_CONNECT', `cannot connect to ${peer}: ${err.message}${code ? ` (${code})` : ''}`, err));
      }
    };
    session.once('error', fail);
    session.once('close', () => fail(new Error('session closed before it was established')));
    session.once('connect', () => {
      clearTimeout(timer);
      session.off('error', fail);
      session.removeAllListeners('close');
      session.once('close', forget);
      const idle = this.#options.idleMs;
      if (idle > 0)
        session.setTimeout(idle, () => {
          forget();
          session.close();
        });
      entry.established = true;
      resolve(session);
    });
    // Nobody may be waiting (reset while connecting): the rejection is reported to the next caller.
    ready.catch(() => {});
    return entry;
  }

  /** Drops the session of `key` (endpoint gone), or all (transport changed); streams under way finish. */
  reset(key?: string): void {
    for (const [k, entry] of [...this.#entries]) {
      if (key !== undefined && k !== key) continue;
      this.#entries.delete(k);
      entry.session.close();
    }
  }

  /** Closes every session, waiting for streams under way. */
  async close(): Promise<void> {
    const sessions = [...this.#entries.values()].map((e) => e.session);
    this.#entries.clear();
    await Promise.all(sessions.map((s) => (s.closed ? undefined : new Promise<void>((resolve) => s.close(() => resolve())))));
  }

  /** Destroys every session at once. */
  destroy(): void {
    for (const entry of this.#entries.values()) entry.session.destroy();
    this.#entries.clear();
  }
}

const byCluster = new WeakMap<Cluster, H2Sessions>();

/** Used until the proxy of the cluster configures its own (e.g. a health check that comes first). */
const DEFAULT_SESSION_OPTIONS: H2SessionOptions = { connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS, idleMs: DEFAULT_POOL_IDLE_MS };

/**
 * The HTTP/2 sessions of a cluster, created (and tied to the cluster's lifecycle) on first use.
 * `options` (from the upstream's timeouts) apply to sessions opened from then on.
 */
export function h2SessionsFor(cluster: Cluster, options?: H2SessionOptions): H2Sessions {
  let sessions = byCluster.get(cluster);
  if (!sessions) {
    sessions = new H2Sessions(cluster, options ?? DEFAULT_SESSION_OPTIONS);
    byCluster.set(cluster, sessions);
    cluster.attachments.push(sessions);
  } else if (options) {
    sessions.configure(options);
  }
  return sessions;
}
