/**
 * The sidecar process, assembled from a validated config: discovery feeds clusters, listeners proxy
 * through them, the admin API shows it all. `start` binds everything; `stop` drains gracefully.
 */
import { createPicker } from './balancer/index.ts';
import { Cluster } from './cluster/cluster.ts';
import type { MeshletConfig, UpstreamConfig } from './config/schema.ts';
import { ConsulIntegration } from './discovery/consul.ts';
import { FileProvider } from './discovery/file.ts';
import { EndpointRegistry } from './discovery/registry.ts';
import { StaticProvider } from './discovery/static.ts';
import { makeEndpoint, type DiscoveryProvider } from './discovery/types.ts';
import { AdminServer } from './admin/server.ts';
import { registerCoreRoutes } from './admin/routes.ts';
import { HttpListener } from './listeners/http-listener.ts';
import { TcpListener } from './listeners/tcp-listener.ts';
import type { ExchangeObserver, ForwardLayer } from './protocols/exchange.ts';
import { createHttpProxy } from './protocols/http1.ts';
import { createTcpProxy } from './protocols/tcp.ts';
import { connectionGateOptions, installResilience } from './resilience/index.ts';
import { installSecurity, type InboundSecurity } from './security/install.ts';
import { MeshEvents } from './telemetry/events.ts';
import { installTelemetry } from './telemetry/install.ts';
import { createLogger, type Logger } from './telemetry/logger.ts';

type Listener = HttpListener | TcpListener;

export interface BoundPorts {
  readonly admin: number;
  readonly inbound: number;
  /** Upstream name -> local port. */
  readonly upstreams: Readonly<Record<string, number>>;
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

export type LifecycleState = 'created' | 'starting' | 'serving' | 'draining' | 'stopped';

export class Sidecar {
  readonly config: Readonly<MeshletConfig>;
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
  /** Hooks run once every listener is bound (e.g. start active health checks). */
  readonly afterStart: Array<() => void> = [];
  /** Hooks run last on shutdown, once every listener is closed (e.g. flush the last trace spans). */
  readonly afterStop: Array<() => Promise<void>> = [];
  /** Consul discovery and self-registration, when `discovery.consul` is configured (set by start). */
  consul: ConsulIntegration | undefined;
  readonly #options: SidecarOptions;
  readonly #outbound = new Map<string, Listener>();
  #inbound: Listener | undefined;
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
      this.clusters.set(
        upstream.name,
        new Cluster({
          name: upstream.name,
          service: upstream.service ?? upstream.name,
          picker: createPicker(upstream.balancer, { sticky: upstream.sticky !== undefined }),
          connectTimeoutMs: upstream.timeouts.connect,
          poolIdleMs: upstream.timeouts.poolIdle,
          maxConnectionsPerEndpoint: upstream.maxConnectionsPerEndpoint,
          log: this.log,
        }),
      );
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
    // First: with mTLS on, no certificate means no start (never a silent plaintext listener).
    this.#security = await installSecurity(this);
    for (const cluster of this.clusters.values()) this.registry.subscribe(cluster.service, (eps) => cluster.setEndpoints(eps));
    // Mark clusters with no discovered endpoints yet as "known empty" only once a provider spoke.
    const providers: DiscoveryProvider[] = [new StaticProvider(config)];
    if (config.discovery.file) {
      const onReload = (result: { ok: boolean; error?: string }) => this.events.emit('configReload', { source: 'catalog', ...result });
      providers.push(new FileProvider(config.discovery.file.path, this.log, onReload));
    }
    if (config.discovery.consul) providers.push((this.consul = new ConsulIntegration(this, config.discovery.consul)).provider);
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
    this.#ports = { admin, inbound, upstreams };
    this.#state = 'serving';
    for (const hook of this.afterStart) hook();
    this.consul?.startRegistration(this.#ports);
    this.log.info({ service: config.service.name, ports: this.#ports }, 'sidecar serving');
    return this.#ports;
  }

  #outboundListener(upstream: UpstreamConfig): Listener {
    const cluster = this.clusters.get(upstream.name)!;
    const name = `outbound:${upstream.name}`;
    if (upstream.protocol === 'tcp') {
      const proxy = createTcpProxy({ cluster, connectTimeoutMs: upstream.timeouts.connect, idleTimeoutMs: upstream.timeouts.idle, log: this.log });
      return new TcpListener(name, proxy, this.log, undefined, connectionGateOptions(this.events, name, upstream.connectionLimit));
    }
    const proxy = createHttpProxy({
      cluster,
      clientProto: 'http',
      requestTimeoutMs: upstream.timeouts.request,
      idleTimeoutMs: upstream.timeouts.idle,
      layers: this.outboundLayers.map((make) => make({ upstream, cluster, events: this.events, log: this.log })),
      observers: this.observers,
      log: this.log,
    });
    const connectionLimit = connectionGateOptions(this.events, name, upstream.connectionLimit);
    return new HttpListener({ name, maxRequestHeadBytes: this.config.limits.maxRequestHeadBytes, idleTimeoutMs: upstream.timeouts.idle, connectionLimit, log: this.log }, proxy);
  }

  #inboundListener(): Listener {
    const { inbound } = this.config;
    const cluster = this.localCluster;
    if (inbound.protocol === 'tcp') {
      const proxy = createTcpProxy({ cluster, connectTimeoutMs: inbound.timeouts.connect, idleTimeoutMs: inbound.timeouts.idle, log: this.log });
      const handler = this.#security ? this.#security.gateTcp(proxy) : proxy;
      return new TcpListener('inbound', handler, this.log, this.#security?.tls, connectionGateOptions(this.events, 'inbound', inbound.connectionLimit));
    }
    const proxy = createHttpProxy({
      cluster,
      clientProto: this.#security ? 'https' : 'http',
      requestTimeoutMs: inbound.timeouts.request,
      idleTimeoutMs: inbound.timeouts.idle,
      layers: this.inboundLayers,
      observers: this.observers,
      log: this.log,
    });
    const connectionLimit = connectionGateOptions(this.events, 'inbound', inbound.connectionLimit);
    return new HttpListener({ name: 'inbound', maxRequestHeadBytes: this.config.limits.maxRequestHeadBytes, idleTimeoutMs: inbound.timeouts.idle, connectionLimit, tls: this.#security?.tls, log: this.log }, proxy);
  }

  /** Listeners by name, for the admin API and metrics. */
  listeners(): Array<{ name: string; listener: Listener }> {
    const all: Array<{ name: string; listener: Listener }> = [];
    if (this.#inbound) all.push({ name: 'inbound', listener: this.#inbound });
    for (const [name, listener] of this.#outbound) all.push({ name: `outbound:${name}`, listener });
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
    await this.#inbound?.close(remaining());
    await Promise.all([...this.#outbound.values()].map((l) => l.close(remaining())));
    await this.registry.stop();
    await Promise.all([this.localCluster.close(), ...[...this.clusters.values()].map((c) => c.close())]);
    await this.admin.close();
    for (const hook of this.afterStop) await hook().catch((err: unknown) => this.log.warn({ err }, 'shutdown hook failed'));
    this.#state = 'stopped';
    this.log.info('stopped');
    this.#markStopped();
  }
}
