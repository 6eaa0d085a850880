/**
 * Wires telemetry into a sidecar through its extension points: metrics (observer, event counters,
 * admin `/metrics`), tracing when enabled (SERVER span observer, per-attempt CLIENT span layer pushed
 * last so it sits innermost, inbound context layer, flush on stop) and the access log when switched on.
 * Disabled features install nothing, so they cost nothing per request.
 */
import type { Sidecar } from '../sidecar.ts';
import { createAccessLog } from './access-log.ts';
import { configuredOtlpEndpoint, DEFAULT_OTLP_TRACES_URL, type ExportCounters } from './export.ts';
import { MeshMetrics } from './metrics.ts';
import { MeshTracing } from './tracing.ts';
import { TraceStore } from './trace-store.ts';
import { installAdminViews } from '../admin/views.ts';

/** Longest wait for the last span export on shutdown. */
const TRACE_FLUSH_ON_STOP_MS = 5000;

export interface Telemetry {
  readonly metrics: MeshMetrics;
  /** Undefined when tracing is off. */
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
    tracing = new MeshTracing({
      config: tracingConfig,
      url,
      serviceName: tracingConfig.serviceName ?? config.service.name,
      namespace: config.service.namespace,
      localCluster: sidecar.localCluster,
      counters: exportCounters(sidecar, metrics, url),
      processors: [traces.processor()],
    });
    const t = tracing;
    sidecar.observers.push(t.observer);
    sidecar.outboundLayers.push(t.clientLayer);
    sidecar.inboundLayers.push(t.inboundLayer);
    sidecar.afterStop.push(() => t.shutdown(Math.min(TRACE_FLUSH_ON_STOP_MS, tracingConfig.exportTimeout)));
    metrics.traceQueueGauge(() => t.queued);
    log.info({ endpoint: url, source: endpoint?.source ?? 'default', sampleRatio: tracingConfig.sampleRatio, propagation: tracingConfig.propagation }, 'tracing enabled');
  }

  if (config.logging.accessLog) sidecar.observers.push(createAccessLog(log, sidecar.localCluster));
  // The dashboard, /tap and /traces show what telemetry records.
  installAdminViews(sidecar, traces);
  return { metrics, tracing, traces };
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
