/**
 * Applies a validated config to a running sidecar, guided by its diff (config/diff.ts):
 *
 * - changed upstream: the cluster keeps its endpoints and their state, takes the new picker and pool
 *   settings; a new handler (layers, timeouts) is swapped into the existing listener, so established
 *   client connections and requests under way carry on (the old handler finishes what it started);
 *   its background tasks (health checks) are restarted with the new settings.
 * - added upstream: new cluster and listener. Removed: its listener drains (shutdown.drainTimeout), then
 *   its cluster closes. Rebound (new address, port, protocol, service or connection limit): a new
 *   listener and cluster, the old listener drains.
 * - static endpoints go through the registry; inbound timeouts rebuild the inbound handler; the local
 *   app's address applies to the local cluster; the log level applies at once.
 *
 * New listeners are bound before anything changes, so a port already in use refuses the reload with
 * the old config intact. Only a port freed by this same reload is bound after the switch.
 */
import type { Socket } from 'node:net';
import { createPicker } from '../balancer/index.ts';
import { Cluster, type ClusterOptions } from '../cluster/cluster.ts';
import { makeEndpoint } from '../discovery/types.ts';
import { StaticProvider } from '../discovery/static.ts';
import { HttpListener } from '../listeners/http-listener.ts';
import type { TcpListener } from '../listeners/tcp-listener.ts';
import { Http2Listener, type Http2Handler } from '../listeners/http2-listener.ts';
import type { HttpHandler } from '../protocols/upgrade.ts';
import type { InboundSecurity } from '../security/install.ts';
import type { Sidecar } from '../sidecar.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ConfigDiff } from './diff.ts';
import type { MeshletConfig, UpstreamConfig } from './schema.ts';

type Listener = HttpListener | Http2Listener | TcpListener;
type Handler = HttpHandler | Http2Handler | ((socket: Socket) => void);

/** The parts of a Sidecar a reload changes (handed over by `Sidecar.applyConfig`). */
export interface ReloadHost {
  readonly sidecar: Sidecar;
  readonly outbound: Map<string, Listener>;
  readonly inbound: Listener | undefined;
  readonly security: InboundSecurity | undefined;
  /** Records an upstream's bound port (undefined: the upstream is gone). */
  setPort(name: string, port: number | undefined): void;
  newOutboundListener(upstream: UpstreamConfig, cluster: Cluster): Listener;
  outboundHandler(upstream: UpstreamConfig): Handler;
  inboundHandler(): Handler;
  /** Subscribes a cluster (in `sidecar.clusters`) to its service's endpoints. */
  follow(cluster: Cluster): void;
  unfollow(name: string): void;
  startTasks(upstream: UpstreamConfig): void;
  stopTasks(name: string): void;
}

/** Cluster settings of an upstream (at start and on reload). */
export function clusterOptions(upstream: UpstreamConfig, log: Logger): ClusterOptions {
  return {
    name: upstream.name,
    service: upstream.service ?? upstream.name,
    picker: createPicker(upstream.balancer, { sticky: upstream.sticky !== undefined }),
    connectTimeoutMs: upstream.timeouts.connect,
    poolIdleMs: upstream.timeouts.poolIdle,
    maxConnectionsPerEndpoint: upstream.maxConnectionsPerEndpoint,
    log,
  };
}

/** A listener about to replace (or add) an upstream, bound before the switch when its port is free. */
interface Incoming {
  readonly upstream: UpstreamConfig;
  readonly index: number;
  readonly cluster: Cluster;
  readonly listener: Listener;
  port: number | undefined;
}

/** How long a port freed by this reload may take to be released by the OS before binding gives up. */
const REBIND_RETRY_MS = 2000;

/** Listeners retiring after a reload, awaited when the sidecar stops. */
const retiring = new WeakMap<Sidecar, Set<Promise<void>>>();

/**
 * Applies `next` (already validated, `diff.refused` empty). Rejects, changing nothing, when a new
 * listener cannot bind; resolves with problems met after the switch (a freed port taken meanwhile).
 */
export async function applyConfig(host: ReloadHost, next: Readonly<MeshletConfig>, diff: ConfigDiff): Promise<string[]> {
  const { sidecar } = host;
  const index = new Map(next.upstreams.map((u, i) => [u.name, i]));
  const upstreamOf = (name: string) => next.upstreams[index.get(name)!]!;

  // 1. Build and bind what is new, before touching anything (a port in use refuses the reload).
  const freed = new Set([...diff.upstreams.removed, ...diff.upstreams.rebound].map((name) => sidecar.ports.upstreams[name]));
  const incoming: Incoming[] = [...diff.upstreams.added, ...diff.upstreams.rebound].map((name) => {
    const upstream = upstreamOf(name);
    const cluster = new Cluster(clusterOptions(upstream, sidecar.log));
    return { upstream, index: index.get(name)!, cluster, listener: host.newOutboundListener(upstream, cluster), port: undefined };
  });
  try {
    for (const entry of incoming) {
      const { upstream } = entry;
      if (upstream.port !== 0 && freed.has(upstream.port)) continue;
      entry.port = await bindOrName(entry);
    }
  } catch (err) {
    await Promise.all(incoming.map((e) => (e.port === undefined ? undefined : e.listener.close(0))));
    throw err;
  }

  // 2. Switch. From here on nothing awaits until every listener serves the new config.
  const previous = new Map(sidecar.config.upstreams.map((u) => [u.name, u]));
  sidecar.config = next;
  if (diff.logLevel) sidecar.log.level = next.logging.level;
  for (const name of [...diff.upstreams.removed, ...diff.upstreams.rebound]) retire(host, name, next.shutdown.drainTimeout);
  for (const name of diff.upstreams.changed) {
    const upstream = upstreamOf(name);
    const before = previous.get(name)!;
    const { picker, connectTimeoutMs, poolIdleMs, maxConnectionsPerEndpoint } = clusterOptions(upstream, sidecar.log);
    // The picker (round-robin position, hash ring) stays unless the balancer or stickiness changed.
    const samePicker = before.balancer === upstream.balancer && (before.sticky === undefined) === (upstream.sticky === undefined);
    sidecar.clusters.get(name)!.reconfigure({ ...(samePicker ? {} : { picker }), connectTimeoutMs, poolIdleMs, maxConnectionsPerEndpoint });
    host.stopTasks(name);
  }
  for (const { upstream, cluster } of incoming) sidecar.clusters.set(upstream.name, cluster);
  // mTLS transports before any endpoint arrives, so no connection is ever opened in plaintext. A changed
  // upstream keeps its transport (and pooled connections) unless the connect timeout it holds changed.
  const newConnectTimeout = diff.upstreams.changed.filter((name) => previous.get(name)!.timeouts.connect !== upstreamOf(name).timeouts.connect);
  const secured = new Set([...diff.upstreams.added, ...diff.upstreams.rebound, ...newConnectTimeout]);
  if (secured.size > 0) host.security?.secureUpstreams(secured);
  for (const name of diff.upstreams.changed) {
    const upstream = upstreamOf(name);
    swapHandler(host.outbound.get(name)!, host.outboundHandler(upstream), upstream.timeouts.idle);
    host.startTasks(upstream);
  }
  for (const { upstream, cluster, listener, port } of incoming) {
    host.follow(cluster);
    host.outbound.set(upstream.name, listener);
    if (port !== undefined) host.setPort(upstream.name, port);
    host.startTasks(upstream);
  }
  // Routes hold their targets' clusters and layers (and new listeners were built before the switch):
  // rebuild every routed listener not rebuilt above once anything about upstreams changed.
  const { added, removed, changed, rebound } = diff.upstreams;
  if (added.length + removed.length + changed.length + rebound.length > 0) {
    for (const upstream of next.upstreams) {
      if (upstream.routes && upstream.routes.length > 0 && !changed.includes(upstream.name)) swapHandler(host.outbound.get(upstream.name)!, host.outboundHandler(upstream), upstream.timeouts.idle);
    }
  }
  if (diff.staticEndpoints) await new StaticProvider(next).start((snapshot) => sidecar.registry.apply(snapshot));
  if (diff.localApp) sidecar.localCluster.setEndpoints([makeEndpoint({ address: next.service.address, port: next.service.port })]);
  if (diff.inbound) {
    const { connect, poolIdle, idle } = next.inbound.timeouts;
    sidecar.localCluster.reconfigure({ connectTimeoutMs: connect, poolIdleMs: poolIdle });
    if (host.inbound) swapHandler(host.inbound, host.inboundHandler(), idle);
  }

  // 3. Ports freed by this reload: bind once the old listener let go.
  const problems: string[] = [];
  for (const entry of incoming) {
    if (entry.port !== undefined) continue;
    try {
      entry.port = await bindOrName(entry, REBIND_RETRY_MS);
      host.setPort(entry.upstream.name, entry.port);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  return problems;
}

/** Takes an upstream's listener and cluster out of service; the listener drains in the background. */
function retire(host: ReloadHost, name: string, drainMs: number): void {
  const { sidecar } = host;
  host.stopTasks(name);
  host.unfollow(name);
  const cluster = sidecar.clusters.get(name);
  const listener = host.outbound.get(name);
  sidecar.clusters.delete(name);
  host.outbound.delete(name);
  host.setPort(name, undefined);
  // close() stops accepting at once; in-flight requests get drainMs, then the pools close.
  const done = (listener?.close(drainMs) ?? Promise.resolve())
    .then(() => cluster?.close())
    .catch((err: unknown) => sidecar.log.warn({ err, upstream: name }, 'retired listener did not close cleanly'));
  let pending = retiring.get(sidecar);
  if (!pending) {
    const set = (pending = new Set());
    retiring.set(sidecar, set);
    sidecar.afterStop.push(async () => void (await Promise.all(set)));
  }
  const set = pending;
  set.add(done);
  void done.then(() => set.delete(done));
}

function swapHandler(listener: Listener, handler: Handler, idleTimeoutMs: number): void {
  if (listener instanceof HttpListener) listener.setHandler(handler as HttpHandler, idleTimeoutMs);
  else if (listener instanceof Http2Listener) listener.setHandler(handler as Http2Handler, idleTimeoutMs);
  else listener.setHandler(handler as (socket: Socket) => void);
}

/** Binds an incoming listener; the error names the field. Retries EADDRINUSE for `retryMs` (a port just freed). */
async function bindOrName(entry: Incoming, retryMs = 0): Promise<number> {
  const { upstream, index, listener } = entry;
  const deadline = Date.now() + retryMs;
  for (;;) {
    try {
      return await listener.listen(upstream.port, upstream.address);
    } catch (err) {
      const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      if (code === 'EADDRINUSE' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
        continue;
      }
      throw new Error(`upstreams[${index}].port: ${(err as Error).message}`, { cause: err });
    }
  }
}
