/**
 * Wires telemetry into a sidecar through its extension points: metrics (observer, event counters,
 * admin `/metrics`), tracing when enabled (SERVER span observer, per-attempt CLIENT span layer pushed
 * last so it sits innermost, inbound context layer, flush on stop) and the access log when switched on.
 * Disabled features install nothing, so they cost nothing per request.
 */
import { Buffer } from 'node:buffer';
import process from 'node:process';
import type { Sidecar } from '../sidecar.ts';
import { createAccessLog } from './access-log.ts';
import { configuredOtlpEndpoint, DEFAULT_OTLP_TRACES_URL, type ExportCounters } from './trace-context.ts';
import { MeshMetrics } from './metrics.ts';
import type { MeshTracing } from './tracing.ts';
import { TraceStore } from './trace-store.ts';
import { installAdminViews } from '../admin/views.ts';

/** Longest wait for the last span export on shutdown. */
const TRACE_FLUSH_ON_STOP_MS = 5000;

export interface Telemetry {
  readonly metrics: MeshMetrics;
  /** Undefined when tracing is off, and until `sidecar.start()` has loaded it. */
  readonly tracing: MeshTracing | undefined;
  /** Recent traces for the admin API: spans POSTed to /v1/traces and, with tracing on, this sidecar's own. */
  readonly traces: TraceStore;
}

/** Installs metrics, tracing and the access log on `sidecar`; call once, before `start()`. */
export function installTelemetry(sidecar: Sidecar, env: NodeJS.ProcessEnv = process.env): Telemetry {
  const { config, log } = sidecar;
  const { tracing: tracingConfig, metrics: metricsConfig } = config.telemetry;

  const metrics = new MeshMetrics(sidecar, metricsConfig);
  sidecar.observers.push(metrics.observer);
  sidecar.admin.route('GET', '/metrics', async (_req, res) => {
    const text = await metrics.scrape();
    res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
    res.end(text);
  });

  const traces = new TraceStore(config.admin.traces);
  let tracing: MeshTracing | undefined;
  const endpoint = tracingConfig.enabled === false ? undefined : configuredOtlpEndpoint(tracingConfig.endpoint, env);
  if (tracingConfig.enabled ?? endpoint !== undefined) {
    const url = endpoint?.url ?? DEFAULT_OTLP_TRACES_URL;
    // The OpenTelemetry SDK is loaded by start() (before any listener exists), not here: a sidecar
    // without tracing never loads it (idle memory, docs/performance.md). The observer and layers are
    // registered now, in their usual places, and call the tracer once it is there.
    sidecar.beforeStart.push(async () => {
      const { MeshTracing } = await import('./tracing.ts');
      tracing = new MeshTracing({
        config: tracingConfig,
        url,
        serviceName: tracingConfig.serviceName ?? config.service.name,
        namespace: config.service.namespace,
        localCluster: sidecar.localCluster,
        counters: exportCounters(sidecar, metrics, url),
        processors: [traces.processor()],
      });
      telemetry.tracing = tracing;
      log.info({ endpoint: url, source: endpoint?.source ?? 'default', sampleRatio: tracingConfig.sampleRatio, propagation: tracingConfig.propagation }, 'tracing enabled');
    });
    sidecar.observers.push({
      onStart: (x) => tracing?.observer.onStart?.(x),
      onEnd: (x, outcome) => tracing?.observer.onEnd?.(x, outcome),
    });
    sidecar.outboundLayers.push((ctx) => loaded(tracing).clientLayer(ctx));
    sidecar.inboundLayers.push((next) => loaded(tracing).inboundLayer(next));
    sidecar.afterStop.push(async () => tracing?.shutdown(Math.min(TRACE_FLUSH_ON_STOP_MS, tracingConfig.exportTimeout)));
    metrics.traceQueueGauge(() => tracing?.queued ?? 0);
  }

  if (config.logging.accessLog) sidecar.observers.push(createAccessLog(log, sidecar.localCluster));
  // The dashboard, /tap and /traces show what telemetry records.
  installAdminViews(sidecar, traces);
  const telemetry: { -readonly [K in keyof Telemetry]: Telemetry[K] } = { metrics, tracing, traces };
  return telemetry;
}

/** The tracer, which start() loads before it builds any listener (and so any layer chain). */
function loaded(tracing: MeshTracing | undefined): MeshTracing {
  if (!tracing) throw new Error('tracing layers are built by Sidecar.start(), after the tracer is loaded');
  return tracing;
}

/** Counts export outcomes and logs the start and end of each failure streak (not every failure). */
function exportCounters(sidecar: Sidecar, metrics: MeshMetrics, url: string): ExportCounters {
  let failing = false;
  return {
    exported(count) {
      metrics.spansExported.inc(count);
      if (failing) {
        failing = false;
        sidecar.log.info({ endpoint: url }, 'trace export recovered');
      }
    },
    dropped(count, reason, error) {
      metrics.spansDropped.inc({ reason }, count);
      if (!failing) {
        failing = true;
        sidecar.log.warn({ endpoint: url, reason, err: error?.message }, 'trace spans dropped; counting them in meshlet_trace_spans_dropped_total');
      }
    },
  };
}
