/**
 * Prometheus metrics of one sidecar, in its own prom-client Registry (several sidecars may share a
 * process). Request counts and latency are plain numbers per cluster fed by an exchange observer
 * (request-stats.ts); feature counters are fed by the event bus; gauges that mirror live state (listeners, endpoints, discovery,
 * certificates) read it at scrape time in `collect()`, so the request path never updates them.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from './prom.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { ExchangeObserver } from '../protocols/exchange.ts';
import type { Sidecar } from '../sidecar.ts';
import type { MetricsConfig } from './config.ts';
import { registerRequestFamilies, SeriesStats } from './request-stats.ts';

const PROVIDER_STATES = ['starting', 'ok', 'degraded'] as const;

let processRegistry: Registry | undefined;

/** process_* and nodejs_* metrics describe the whole process: one collector for all sidecars in it. */
function sharedProcessRegistry(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics(processRegistry);
  }
  return processRegistry;
}

/** Direction and upstream of a listener named `inbound`, `outbound:NAME` or `proxy` (the host-routing HTTP proxy). */
function listenerLabels(name: string): { direction: string; upstream: string } {
  if (name === 'proxy') return { direction: 'outbound', upstream: 'proxy' };
  return name.startsWith('outbound:') ? { direction: 'outbound', upstream: name.slice('outbound:'.length) } : { direction: 'inbound', upstream: 'local' };
}

export class MeshMetrics {
  readonly registry = new Registry();
  readonly #sidecar: Sidecar;
  readonly #config: MetricsConfig;
  readonly #series = new Map<Cluster, SeriesStats>();
  readonly #proxyErrors: Counter<'direction' | 'upstream' | 'reason'>;
  /** Spans handed to the collector successfully. */
  readonly spansExported: Counter;
  /** Spans lost: queue full (exporter slow or down) or export failed. */
  readonly spansDropped: Counter<'reason'>;
  readonly #certificates = new Map<string, Date>();

  constructor(sidecar: Sidecar, config: MetricsConfig) {
    this.#sidecar = sidecar;
    this.#config = config;
    const registers = [this.registry];
    registerRequestFamilies(this.registry, () => this.#series.values(), config.latencyBuckets);
    this.#proxyErrors = new Counter({ name: 'meshlet_proxy_errors_total', help: 'Responses made by Meshlet itself, by the x-meshlet-error reason', labelNames: ['direction', 'upstream', 'reason'], registers });
    this.spansExported = new Counter({ name: 'meshlet_trace_spans_exported_total', help: 'Spans accepted by the OTLP collector', registers });
    this.spansDropped = new Counter({ name: 'meshlet_trace_spans_dropped_total', help: 'Spans lost: queue_full (collector slow or down) or export_failed', labelNames: ['reason'], registers });
    this.#listenerGauges();
    this.#endpointGauges();
    this.#stateGauges();
    this.#eventCounters();
  }

  /** Feeds request counts and latency: plain numbers per cluster, formatted only when scraped. */
  readonly observer: ExchangeObserver = {
    onEnd: (x, outcome) => {
      const series = this.#seriesFor(x.cluster);
      series.record(outcome.status, outcome.durationMs / 1000, outcome.bytesIn, outcome.bytesOut);
      if (outcome.error) this.#proxyErrors.inc({ ...series.labels, reason: outcome.error.reason });
    },
  };

  /** Adds a gauge of spans waiting for export (only when tracing is on). */
  traceQueueGauge(queued: () => number): void {
    new Gauge({
      name: 'meshlet_trace_queue_spans',
      help: 'Finished spans waiting to be exported',
      registers: [this.registry],
      collect() {
        this.set(queued());
      },
    });
  }

  /** The Prometheus text exposition: this sidecar's metrics, then the process's. */
  async scrape(): Promise<string> {
    const own = await this.registry.metrics();
    return this.#config.processMetrics ? own + (await sharedProcessRegistry().metrics()) : own;
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #seriesFor(cluster: Cluster): SeriesStats {
    let series = this.#series.get(cluster);
    if (!series) {
      const labels = cluster === this.#sidecar.localCluster ? { direction: 'inbound', upstream: 'local' } : { direction: 'outbound', upstream: cluster.name };
      series = new SeriesStats(labels, this.#config.latencyBuckets);
      this.#series.set(cluster, series);
    }
    return series;
  }

  #listenerGauges(): void {
    const sidecar = this.#sidecar;
    const registers = [this.registry];
    new Gauge({
      name: 'meshlet_active_requests',
      help: 'HTTP requests in flight on each listener',
      labelNames: ['direction', 'upstream'],
      registers,
      collect() {
        this.reset();
        for (const { name, listener } of sidecar.listeners()) if ('inFlight' in listener) this.set(listenerLabels(name), listener.inFlight);
      },
    });
    new Gauge({
      name: 'meshlet_active_connections',
      help: 'Client connections open on each listener (HTTP keep-alive and TCP)',
      labelNames: ['direction', 'upstream'],
      registers,
      async collect() {
        const counts = await Promise.all(
          sidecar.listeners().map(
            ({ name, listener }) =>
              new Promise<[string, number | undefined]>((resolve) => listener.server.getConnections((err, n) => resolve([name, err ? undefined : n]))),
          ),
        );
        this.reset();
        for (const [name, n] of counts) if (n !== undefined) this.set(listenerLabels(name), n);
      },
    });
  }

  #endpointGauges(): void {
    const sidecar = this.#sidecar;
    const registers = [this.registry];
    new Gauge({
      name: 'meshlet_endpoints',
      help: 'Endpoints of each upstream by state: healthy, unhealthy (health checks) or ejected (outlier detection)',
      labelNames: ['upstream', 'state'],
      registers,
      collect() {
        const now = Date.now();
        this.reset();
        for (const [upstream, cluster] of sidecar.clusters) {
          const counts = { healthy: 0, unhealthy: 0, ejected: 0 };
          for (const s of cluster.endpoints) counts[!s.healthy ? 'unhealthy' : s.ejectedUntil > now ? 'ejected' : 'healthy']++;
          for (const [state, n] of Object.entries(counts)) this.set({ upstream, state }, n);
        }
      },
    });
    new Gauge({
      name: 'meshlet_endpoint_up',
      help: 'Whether an endpoint may receive traffic now (1) or is unhealthy or ejected (0)',
      labelNames: ['upstream', 'endpoint'],
      registers,
      collect() {
        const now = Date.now();
        this.reset();
        for (const [upstream, cluster] of sidecar.clusters) for (const s of cluster.endpoints) this.set({ upstream, endpoint: s.key }, s.isAvailable(now) ? 1 : 0);
      },
    });
  }

  #stateGauges(): void {
    const sidecar = this.#sidecar;
    const certificates = this.#certificates;
    const registers = [this.registry];
    new Gauge({
      name: 'meshlet_info',
      help: 'Always 1; labels name the service this sidecar fronts',
      labelNames: ['service', 'namespace'],
      registers,
    }).set({ service: sidecar.config.service.name, namespace: sidecar.config.service.namespace }, 1);
    new Gauge({
      name: 'meshlet_discovery_provider_state',
      help: 'Discovery provider state: 1 for the current one of starting, ok, degraded',
      labelNames: ['provider', 'state'],
      registers,
      collect() {
        this.reset();
        for (const status of sidecar.registry.providerStatus()) for (const state of PROVIDER_STATES) this.set({ provider: status.provider, state }, status.state === state ? 1 : 0);
      },
    });
    new Gauge({
      name: 'meshlet_certificate_expiry_seconds',
      help: 'Seconds until a certificate expires (negative once expired): the mesh leaf by SPIFFE ID, the edge certificate as edge:<first domain>',
      labelNames: ['identity'],
      registers,
      collect() {
        const now = Date.now();
        this.reset();
        for (const [identity, notAfter] of certificates) this.set({ identity }, (notAfter.getTime() - now) / 1000);
      },
    });
  }

  #eventCounters(): void {
    const { events } = this.#sidecar;
    const registers = [this.registry];
    const retries = new Counter({ name: 'meshlet_retries_total', help: 'Retry attempts made, by upstream and reason', labelNames: ['upstream', 'reason'], registers });
    const exhausted = new Counter({ name: 'meshlet_retry_budget_exhausted_total', help: 'Retries skipped because the retry budget was spent', labelNames: ['upstream'], registers });
    const rejected = new Counter({ name: 'meshlet_breaker_rejections_total', help: 'Requests refused by a circuit breaker (circuit_open) or concurrency limit (overflow)', labelNames: ['upstream', 'reason'], registers });
    const ejections = new Counter({ name: 'meshlet_outlier_ejections_total', help: 'Endpoints ejected by outlier detection', labelNames: ['upstream'], registers });
    const health = new Counter({ name: 'meshlet_health_transitions_total', help: 'Endpoint health changes seen by active health checks, by the new state', labelNames: ['upstream', 'state'], registers });
    const limited = new Counter({ name: 'meshlet_rate_limited_total', help: 'Requests or connections refused by a rate limit', labelNames: ['scope'], registers });
    const tls = new Counter({ name: 'meshlet_tls_handshake_errors_total', help: 'Failed TLS handshakes, inbound (from peers) or outbound (to peers)', labelNames: ['side'], registers });
    const denied = new Counter({ name: 'meshlet_authorization_denied_total', help: 'Callers refused by authorization policy', labelNames: ['protocol'], registers });
    const discovery = new Counter({ name: 'meshlet_discovery_state_changes_total', help: 'Discovery provider state changes, by the new state', labelNames: ['provider', 'state'], registers });
    const reloads = new Counter({ name: 'meshlet_config_reloads_total', help: 'Dynamic configuration reloads, by source and result (ok or rejected)', labelNames: ['source', 'result'], registers });
    const acmeOrders = new Counter({ name: 'meshlet_acme_orders_total', help: 'Edge ACME certificate orders, by result (ok or failed)', labelNames: ['result'], registers });
    events.on('retry', (e) => retries.inc({ upstream: e.upstream, reason: e.reason }));
    events.on('retryBudgetExhausted', (e) => exhausted.inc({ upstream: e.upstream }));
    events.on('breakerRejected', (e) => rejected.inc({ upstream: e.upstream, reason: e.reason }));
    events.on('outlier', (e) => {
      if (e.ejected) ejections.inc({ upstream: e.upstream });
    });
    events.on('endpointHealth', (e) => health.inc({ upstream: e.upstream, state: e.healthy ? 'healthy' : 'unhealthy' }));
    events.on('rateLimited', (e) => limited.inc({ scope: e.scope }));
    events.on('tlsHandshakeError', (e) => tls.inc({ side: e.side }));
    events.on('authorizationDenied', (e) => denied.inc({ protocol: e.protocol }));
    events.on('discoveryState', (e) => discovery.inc({ provider: e.provider, state: e.state }));
    events.on('configReload', (e) => reloads.inc({ source: e.source, result: e.ok ? 'ok' : 'rejected' }));
    events.on('certificate', (e) => this.#certificates.set(e.identity, e.notAfter));
    events.on('acme', (e) => acmeOrders.inc({ result: e.state === 'valid' ? 'ok' : 'failed' }));
  }
}
