/**
 * The sidecar process, assembled from a validated config: discovery feeds clusters, listeners proxy
 * through them, the admin API shows it all. `start` binds everything; `stop` drains gracefully.
 */
import type { WireReply } from './protocols/wire/reply.ts';
import type { WireRequest } from './protocols/wire/server-connection.ts';
import type { Socket } from 'node:net';
import { createPicker } from './balancer/index.ts';
import { Cluster } from './cluster/cluster.ts';
import type { MeshletConfig, UpstreamConfig } from './config/schema.ts';
import { applyConfig, clusterOptions, type ReloadHost } from './config/apply.ts';
import type { ConfigDiff } from './config/diff.ts';
import type { ConsulIntegration } from './discovery/consul.ts';
import { FileProvider } from './discovery/file.ts';
import { EndpointRegistry } from './discovery/registry.ts';
import { StaticProvider } from './discovery/static.ts';
import { makeEndpoint, type DiscoveryProvider } from './discovery/types.ts';
import { AdminServer } from './admin/server.ts';
import { registerCoreRoutes } from './admin/routes.ts';
import { HttpListener } from './listeners/http-listener.ts';
import { TcpListener } from './listeners/tcp-listener.ts';
import { Http2Listener, type Http2Handler } from './listeners/http2-listener.ts';
import type { ExchangeObserver, ForwardLayer } from './protocols/exchange.ts';
import { createHttpProxy, type HttpProxyOptions } from './protocols/http1.ts';
import { createUpgradeProxy, withUpgrade, writeRawError, type HttpHandler as UpgradableHandler } from './protocols/upgrade.ts';
import { createRouter, routeLayers } from './routing/router.ts';
import { createHostProxy } from './routing/host-proxy.ts';
import { startEdge, type Edge } from './edge/install.ts';
import { sameValue } from './config/diff.ts';
import { DEFAULT_IDLE_TIMEOUT_MS } from './config/schema.ts';
import { meshError } from './errors.ts';
import { respondWithError } from './protocols/respond.ts';
import { createHttp2Proxy } from './protocols/http2.ts';
import { createTcpProxy } from './protocols/tcp.ts';
import { connectionGateOptions, installResilience } from './resilience/index.ts';
import { installSecurity, type InboundSecurity } from './security/install.ts';
import { MeshEvents } from './telemetry/events.ts';
import { installTelemetry } from './telemetry/install.ts';
import { createLogger, type Logger } from './telemetry/logger.ts';

type Listener = HttpListener | Http2Listener | TcpListener;
type HttpHandler = (req: WireRequest, res: WireReply) => void;

export interface BoundPorts {
  readonly admin: number;
  readonly inbound: number;
  /** Upstream name -> local port. */
  readonly upstreams: Readonly<Record<string, number>>;
  /** The host-routing HTTP proxy listener, when `proxy` is configured. */
  readonly proxy?: number;
  /** The edge TLS listener, when `edge` is configured. */
  readonly edge?: number;
}

export interface SidecarOptions {
  readonly log?: Logger;
  /** Extra discovery providers (e.g. Consul), started with the built-in ones. */
  readonly providers?: readonly DiscoveryProvider[];
}

/** What a layer factory gets to build its layer for one upstream. */
export interface UpstreamLayerContext {
  readonly upstream: UpstreamConfig;
  readonly cluster: Cluster;
  readonly events: MeshEvents;
  readonly log: Logger;
}

/** Background work for one upstream (e.g. active health checks), started and stopped with it. */
export interface UpstreamTask {
  start(): void;
  stop(): void;
}

export type LifecycleState = 'created' | 'starting' | 'serving' | 'draining' | 'stopped';

export class Sidecar {
  /** The config in force; a hot reload (config/reloader.ts) replaces it with the next validated snapshot. */
  config: Readonly<MeshletConfig>;
  readonly log: Logger;
  readonly registry: EndpointRegistry;
  readonly clusters = new Map<string, Cluster>();
  readonly admin: AdminServer;
  /** The one-endpoint cluster that inbound traffic goes to: the local app. */
  readonly localCluster: Cluster;
  /** What happens inside this sidecar (retries, ejections, TLS errors...), for telemetry. */
  readonly events = new MeshEvents();
  /**
   * Factories of layers wrapped around every outbound forward; the first is outermost. Resilience
   * layers come first, per-attempt telemetry last, so each retry is seen as its own attempt.
   */
  readonly outboundLayers: Array<(ctx: UpstreamLayerContext) => ForwardLayer> = [];
  /** Layers wrapped around inbound forwards to the local app (authorization, tracing). */
  readonly inboundLayers: ForwardLayer[] = [];
  /** Observers of every proxied exchange (metrics, access log). */
  readonly observers: ExchangeObserver[] = [];
  /** Hooks run first on shutdown, before any listener drains (e.g. deregister from Consul). */
  readonly beforeDrain: Array<() => Promise<void>> = [];
  /**
   * Factories of per-upstream background tasks (active health checks): started once listeners are bound
   * and when a reload adds or changes the upstream; stopped when it is removed or changed, and on drain.
   */
  readonly upstreamTasks: Array<(ctx: UpstreamLayerContext) => UpstreamTask | undefined> = [];
  /** Hooks awaited first thing in start(), before any listener exists (e.g. load the tracing SDK). */
  readonly beforeStart: Array<() => Promise<void>> = [];
  /** Hooks run once every listener is bound. */
  readonly afterStart: Array<() => void> = [];
  /** Hooks run last on shutdown, once every listener is closed (e.g. flush the last trace spans). */
  readonly afterStop: Array<() => Promise<void>> = [];
  /** Consul discovery and self-registration, when `discovery.consul` is configured (set by start). */
  consul: ConsulIntegration | undefined;
  /** The edge TLS listener for clients outside the mesh, when `edge` is configured (set by start). */
  edge: Edge | undefined;
  readonly #options: SidecarOptions;
  readonly #outbound = new Map<string, Listener>();
  #inbound: Listener | undefined;
  /** The host-routing HTTP proxy listener (`proxy`), dispatching to upstream listeners by Host. */
  #proxy: HttpListener | undefined;
  /** Each HTTP upstream's layer chain, shared by its own listener and routes of other listeners. */
  readonly #chains = new Map<string, { upstream: UpstreamConfig; cluster: Cluster; layers: ForwardLayer[] }>();
  /** Running tasks and discovery subscriptions by upstream name. */
  readonly #tasks = new Map<string, UpstreamTask[]>();
  readonly #unsubscribe = new Map<string, () => void>();
  /** mTLS for the inbound listener (set by start when `security.mtls` is on). */
  #security: InboundSecurity | undefined;
  #state: LifecycleState = 'created';
  #ports: BoundPorts | undefined;
  #stopping: Promise<void> | undefined;
  #markStopped!: () => void;
  /** Settles once the sidecar has fully stopped, whoever asked (signal, admin POST /shutdown). */
  readonly stopped = new Promise<void>((resolve) => {
    this.#markStopped = resolve;
  });

  constructor(config: Readonly<MeshletConfig>, options: SidecarOptions = {}) {
    this.config = config;
    this.#options = options;
    this.log = options.log ?? createLogger(config.logging.level);
    this.registry = new EndpointRegistry(this.log);
    this.admin = new AdminServer(this.log);
    const { service, inbound } = config;
    this.localCluster = new Cluster({
      name: 'local',
      service: service.name,
      picker: createPicker('round_robin'),
      connectTimeoutMs: inbound.timeouts.connect,
      poolIdleMs: inbound.timeouts.poolIdle,
      maxConnectionsPerEndpoint: 256,
      log: this.log,
    });
    this.localCluster.setEndpoints([makeEndpoint({ address: service.address, port: service.port })]);
    for (const upstream of config.upstreams) {
      this.clusters.set(upstream.name, new Cluster(clusterOptions(upstream, this.log)));
    }
    registerCoreRoutes(this);
    installResilience(this);
    // Last, so the per-attempt tracing layer lands innermost, after the layers pushed above.
    installTelemetry(this);
  }

  get state(): LifecycleState {
    return this.#state;
  }

  /** Ports actually bound (differs from config where config says 0). */
  get ports(): BoundPorts {
    if (!this.#ports) throw new Error('sidecar not started');
    return this.#ports;
  }

  /** Starts discovery, binds every listener and the admin API. */
  async start(): Promise<BoundPorts> {
    this.#state = 'starting';
    const { config } = this;
    for (const hook of this.beforeStart) await hook();
    // First: with mTLS on, no certificate means no start (never a silent plaintext listener).
    this.#security = await installSecurity(this);
    for (const cluster of this.clusters.values()) this.#follow(cluster);
    // Mark clusters with no discovered endpoints yet as "known empty" only once a provider spoke.
    const providers: DiscoveryProvider[] = [new StaticProvider(config)];
    if (config.discovery.file) {
      const onReload = (result: { ok: boolean; error?: string }) => this.events.emit('configReload', { source: 'catalog', ...result });
      providers.push(new FileProvider(config.discovery.file.path, this.log, onReload));
    }
    if (config.discovery.consul) {
      // The consul client is loaded only when Consul is configured (idle memory, docs/performance.md).
      const { ConsulIntegration } = await import('./discovery/consul.ts');
      providers.push((this.consul = new ConsulIntegration(this, config.discovery.consul)).provider);
    }
    providers.push(...(this.#options.providers ?? []));
    for (const provider of providers) await this.registry.addProvider(provider);

    const admin = await this.admin.listen(config.admin.port, config.admin.address);
    const upstreams: Record<string, number> = {};
    for (const upstream of config.upstreams) {
      const listener = this.#outboundListener(upstream);
      this.#outbound.set(upstream.name, listener);
      upstreams[upstream.name] = await listener.listen(upstream.port, upstream.address);
    }
    this.#inbound = this.#inboundListener();
    this.#security?.attachInbound(this.#inbound);
    const inbound = await this.#inbound.listen(config.inbound.port, config.inbound.address);
    let proxy: number | undefined;
    if (config.proxy) {
      const lookup = (name: string) => {
        const listener = this.#outbound.get(name);
        return listener instanceof HttpListener ? listener.handler : undefined;
      };
      this.#proxy = new HttpListener({ name: 'proxy', maxRequestHeadBytes: config.limits.maxRequestHeadBytes, requestHeadTimeoutMs: config.limits.requestHeadTimeout, idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS, log: this.log }, createHostProxy(lookup));
      proxy = await this.#proxy.listen(config.proxy.port, config.proxy.address);
    }
    // After the upstream listeners: the edge hands requests to the `edge.to` upstream's handler.
    this.edge = await startEdge(this);
    this.#ports = { admin, inbound, upstreams, ...(proxy === undefined ? {} : { proxy }), ...(this.edge ? { edge: this.edge.port } : {}) };
    this.#state = 'serving';
    for (const upstream of config.upstreams) this.#startTasks(upstream);
    for (const hook of this.afterStart) hook();
    // With mTLS on, register the trust domain the CA actually issued, even when the config leaves it unset.
    this.consul?.startRegistration(this.#ports, this.#security?.credentials.material.identity.trustDomain);
    this.log.info({ service: config.service.name, ports: this.#ports }, 'sidecar serving');
    return this.#ports;
  }

  #follow(cluster: Cluster): void {
    this.#unsubscribe.set(cluster.name, this.registry.subscribe(cluster.service, (eps) => cluster.setEndpoints(eps)));
  }

  #startTasks(upstream: UpstreamConfig): void {
    const ctx = { upstream, cluster: this.clusters.get(upstream.name)!, events: this.events, log: this.log };
    const tasks = this.upstreamTasks.flatMap((make) => make(ctx) ?? []);
    this.#tasks.set(upstream.name, tasks);
    for (const task of tasks) task.start();
  }

  #stopTasks(name: string): void {
    for (const task of this.#tasks.get(name) ?? []) task.stop();
    this.#tasks.delete(name);
  }

  /**
   * Applies a validated config whose differences from the one in force are `diff` (hot reload, see
   * config/apply.ts): established connections stay on listeners whose upstream still exists. Rejects,
   * changing nothing, when a new listener cannot bind; resolves with problems met after the switch.
   */
  applyConfig(next: Readonly<MeshletConfig>, diff: ConfigDiff): Promise<string[]> {
    const host: ReloadHost = {
      sidecar: this,
      outbound: this.#outbound,
      inbound: this.#inbound,
      security: this.#security,
      setPort: (name, port) => {
        const upstreams = { ...this.ports.upstreams };
        if (port === undefined) delete upstreams[name];
        else upstreams[name] = port;
        this.#ports = { ...this.ports, upstreams };
      },
      newOutboundListener: (upstream, cluster) => this.#outboundListener(upstream, cluster),
      outboundHandler: (upstream) => this.#outboundHandler(upstream),
      inboundHandler: () => this.#inboundHandler(),
      follow: (cluster) => this.#follow(cluster),
      unfollow: (name) => {
        this.#unsubscribe.get(name)?.();
        this.#unsubscribe.delete(name);
      },
      startTasks: (upstream) => this.#startTasks(upstream),
      stopTasks: (name) => this.#stopTasks(name),
    };
    return applyConfig(host, next, diff);
  }

  #outboundListener(upstream: UpstreamConfig, cluster = this.clusters.get(upstream.name)!): Listener {
    const name = `outbound:${upstream.name}`;
    const connectionLimit = connectionGateOptions(this.events, name, upstream.connectionLimit);
    if (upstream.protocol === 'tcp') return new TcpListener(name, this.#outboundHandler(upstream, cluster) as (socket: Socket) => void, this.log, undefined, connectionLimit);
    if (upstream.protocol === 'http2' || upstream.protocol === 'grpc') {
      return new Http2Listener({ name, maxRequestHeadBytes: this.config.limits.maxRequestHeadBytes, idleTimeoutMs: upstream.timeouts.idle, connectionLimit, log: this.log }, this.#outboundHandler(upstream, cluster) as Http2Handler);
    }
    const proxy = this.#outboundHandler(upstream, cluster) as HttpHandler;
    return new HttpListener({ name, maxRequestHeadBytes: this.config.limits.maxRequestHeadBytes, requestHeadTimeoutMs: this.config.limits.requestHeadTimeout, idleTimeoutMs: upstream.timeouts.idle, connectionLimit, log: this.log }, proxy);
  }

  /** The request (or connection) handler of an upstream's listener, built from its config. */
  #outboundHandler(upstream: UpstreamConfig, cluster = this.clusters.get(upstream.name)!): HttpHandler | Http2Handler | ((socket: Socket) => void) {
    if (upstream.protocol === 'tcp') return createTcpProxy({ cluster, connectTimeoutMs: upstream.timeouts.connect, idleTimeoutMs: upstream.timeouts.idle, log: this.log });
    if (upstream.protocol === 'http2' || upstream.protocol === 'grpc') {
      const { request, idle, connect, poolIdle } = upstream.timeouts;
      const layers = this.outboundLayers.map((make) => make({ upstream, cluster, events: this.events, log: this.log }));
      return createHttp2Proxy({ cluster, clientProto: 'http', protocol: upstream.protocol, requestTimeoutMs: request, idleTimeoutMs: idle, connectTimeoutMs: connect, poolIdleMs: poolIdle, layers, observers: this.observers, log: this.log });
    }
    const own = this.#upstreamHandler(upstream, cluster, upstream.timeouts.request, []);
    if (!upstream.routes || upstream.routes.length === 0) return own;
    // Routes: each (route, target) gets a handler whose exchange carries the target's cluster and layers.
    return createRouter({
      upstream: upstream.name,
      routes: upstream.routes,
      fallback: own,
      handlerFor: (target, route, name) => {
        const targetUpstream = target === upstream.name ? upstream : this.config.upstreams.find((u) => u.name === target);
        const targetCluster = target === upstream.name ? cluster : this.clusters.get(target);
        // A reload binds new listeners before the switch; their routes are rebuilt once it is done.
        if (!targetUpstream || !targetCluster || targetUpstream.protocol !== 'http') return notReady(target, name);
        return this.#upstreamHandler(targetUpstream, targetCluster, route.timeout ?? targetUpstream.timeouts.request, routeLayers({ route, name }));
      },
    });
  }

  /** An HTTP/1.1 handler (requests and upgrades) to `cluster` through `upstream`'s layers, with `extra` layers outside them. */
  #upstreamHandler(upstream: UpstreamConfig, cluster: Cluster, requestTimeoutMs: number, extra: ForwardLayer[]): UpgradableHandler {
    const options: HttpProxyOptions = {
      cluster,
      clientProto: 'http',
      requestTimeoutMs,
      idleTimeoutMs: upstream.timeouts.idle,
      layers: extra.length === 0 ? this.#layersFor(upstream, cluster) : [...extra, ...this.#layersFor(upstream, cluster)],
      observers: this.observers,
      log: this.log,
    };
    return withUpgrade(createHttpProxy(options), createUpgradeProxy(options));
  }

  /**
   * The layer chain of an upstream, built once per cluster and settings (routes aside), so its own
   * listener and other listeners' routes to it share one breaker, retry budget and rate limit.
   */
  #layersFor(upstream: UpstreamConfig, cluster: Cluster): ForwardLayer[] {
    const cached = this.#chains.get(upstream.name);
    if (cached && cached.cluster === cluster && sameValue({ ...cached.upstream, routes: undefined }, { ...upstream, routes: undefined })) return cached.layers;
    const layers = this.outboundLayers.map((make) => make({ upstream, cluster, events: this.events, log: this.log }));
    this.#chains.set(upstream.name, { upstream, cluster, layers });
    return layers;
  }

  #inboundListener(): Listener {
    const { inbound } = this.config;
    const connectionLimit = connectionGateOptions(this.events, 'inbound', inbound.connectionLimit);
    if (inbound.protocol === 'tcp') return new TcpListener('inbound', this.#inboundHandler() as (socket: Socket) => void, this.log, this.#security?.tls, connectionLimit);
    if (inbound.protocol === 'http2' || inbound.protocol === 'grpc') {
      return new Http2Listener({ name: 'inbound', maxRequestHeadBytes: this.config.limits.maxRequestHeadBytes, idleTimeoutMs: inbound.timeouts.idle, connectionLimit, tls: this.#security?.tls, log: this.log }, this.#inboundHandler() as Http2Handler);
    }
    const proxy = this.#inboundHandler() as HttpHandler;
    return new HttpListener({ name: 'inbound', maxRequestHeadBytes: this.config.limits.maxRequestHeadBytes, requestHeadTimeoutMs: this.config.limits.requestHeadTimeout, idleTimeoutMs: inbound.timeouts.idle, connectionLimit, tls: this.#security?.tls, log: this.log }, proxy);
  }

  #inboundHandler(): HttpHandler | Http2Handler | ((socket: Socket) => void) {
    const { inbound } = this.config;
    const cluster = this.localCluster;
    if (inbound.protocol === 'tcp') {
      const proxy = createTcpProxy({ cluster, connectTimeoutMs: inbound.timeouts.connect, idleTimeoutMs: inbound.timeouts.idle, log: this.log });
      return this.#security ? this.#security.gateTcp(proxy) : proxy;
    }
    if (inbound.protocol === 'http2' || inbound.protocol === 'grpc') {
      const { request, idle, connect, poolIdle } = inbound.timeouts;
      return createHttp2Proxy({ cluster, clientProto: this.#security ? 'https' : 'http', protocol: inbound.protocol, requestTimeoutMs: request, idleTimeoutMs: idle, connectTimeoutMs: connect, poolIdleMs: poolIdle, layers: this.inboundLayers, observers: this.observers, log: this.log });
    }
    const options: HttpProxyOptions = {
      cluster,
      clientProto: this.#security ? 'https' : 'http',
      requestTimeoutMs: inbound.timeouts.request,
      idleTimeoutMs: inbound.timeouts.idle,
      layers: this.inboundLayers,
      observers: this.observers,
      log: this.log,
    };
    return withUpgrade(createHttpProxy(options), createUpgradeProxy(options));
  }

  /** Listeners by name, for the admin API and metrics. */
  listeners(): Array<{ name: string; listener: Listener }> {
    const all: Array<{ name: string; listener: Listener }> = [];
    if (this.#inbound) all.push({ name: 'inbound', listener: this.#inbound });
    for (const [name, listener] of this.#outbound) all.push({ name: `outbound:${name}`, listener });
    if (this.#proxy) all.push({ name: 'proxy', listener: this.#proxy });
    if (this.edge) all.push({ name: 'edge', listener: this.edge.listener });
    return all;
  }

  /**
   * Graceful stop: leave discovery, refuse new inbound while in-flight inbound requests finish (the app
   * may still call out while it drains, so outbound keeps serving until then), then close the rest.
   */
  stop(): Promise<void> {
    this.#stopping ??= this.#drain();
    return this.#stopping;
  }

  async #drain(): Promise<void> {
    this.#state = 'draining';
    const deadline = Date.now() + this.config.shutdown.drainTimeout;
    const remaining = () => Math.max(0, deadline - Date.now());
    this.log.info({ drainTimeoutMs: this.config.shutdown.drainTimeout }, 'draining');
    for (const hook of this.beforeDrain) await hook().catch((err: unknown) => this.log.warn({ err }, 'shutdown hook failed'));
    for (const name of [...this.#tasks.keys()]) this.#stopTasks(name);
    // Outbound keeps accepting for at least `outboundGrace`: an app that got SIGTERM too may still be
    // finishing work that calls out (docker-compose and plain containers stop both at once).
    const grace = Math.min(this.config.shutdown.outboundGrace, remaining());
    const graceOver = grace > 0 ? new Promise<void>((resolve) => setTimeout(resolve, grace)) : undefined;
    // The edge is traffic from outside into the mesh: it drains with inbound, before the upstreams it uses.
    await Promise.all([this.#inbound?.close(remaining()), this.edge?.close(remaining())]);
    await graceOver;
    await Promise.all([...this.#outbound.values(), ...(this.#proxy ? [this.#proxy] : [])].map((l) => l.close(remaining())));
    await this.registry.stop();
    await Promise.all([this.localCluster.close(), ...[...this.clusters.values()].map((c) => c.close())]);
    await this.admin.close();
    for (const hook of this.afterStop) await hook().catch((err: unknown) => this.log.warn({ err }, 'shutdown hook failed'));
    this.#state = 'stopped';
    this.log.info('stopped');
    this.#markStopped();
  }
}

/** A route target missing for a moment (a reload binding new listeners before its switch). */
function notReady(target: string, route: string): UpgradableHandler {
  const error = () => meshError('NO_HEALTHY_ENDPOINT', `route ${route}: upstream "${target}" is not serving yet`);
  return withUpgrade(
    (req, res) => {
      req.body?.resume();
      respondWithError(res, error());
    },
    (_req, socket) => writeRawError(socket, error()),
  );
}
