/**
 * Getting spans out without ever holding up a request: the OTLP endpoint (config, then the standard
 * OTEL_* variables), and a BatchSpanProcessor behind a counted, bounded queue. Ending a span only
 * appends to the queue; a full queue drops the span and counts it; exports run in the background.
 */
import { TraceFlags, type Context } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { BatchSpanProcessor, type ReadableSpan, type Span, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { meshError } from '../errors.ts';

/** The OTLP/HTTP default when tracing is enabled with no endpoint anywhere. */
export const DEFAULT_OTLP_TRACES_URL = 'http://localhost:4318/v1/traces';

export interface ResolvedEndpoint {
  readonly url: string;
  /** Where the URL came from, for the startup log. */
  readonly source: 'config' | 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' | 'OTEL_EXPORTER_OTLP_ENDPOINT' | 'default';
}

function parseEnvUrl(name: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw meshError('CONFIG_INVALID', `${name}: expected an http:// or https:// URL, got ${JSON.stringify(value)} (environment)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw meshError('CONFIG_INVALID', `${name}: expected an http:// or https:// URL, got ${JSON.stringify(value)} (environment)`);
  }
  return url;
}

/**
 * The traces URL: `telemetry.tracing.endpoint`, else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as given),
 * else OTEL_EXPORTER_OTLP_ENDPOINT + `/v1/traces` (the OTLP base-URL rule); undefined when none is set.
 */
export function configuredOtlpEndpoint(configured: string | undefined, env: NodeJS.ProcessEnv): ResolvedEndpoint | undefined {
  if (configured) return { url: configured, source: 'config' };
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (specific) return { url: parseEnvUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', specific).href, source: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' };
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (base) {
    const url = parseEnvUrl('OTEL_EXPORTER_OTLP_ENDPOINT', base).href;
    return { url: `${url.endsWith('/') ? url : `${url}/`}v1/traces`, source: 'OTEL_EXPORTER_OTLP_ENDPOINT' };
  }
  return undefined;
}

/** What the export pipeline reports, for metrics and logs. */
export interface ExportCounters {
  /** `count` spans were dropped: `queue_full` when ended into a full queue, `export_failed` when their export failed. */
  dropped(count: number, reason: 'queue_full' | 'export_failed', error?: Error): void;
  exported(count: number): void;
}

export interface BoundedExportOptions {
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
  readonly scheduledDelayMillis: number;
  readonly exportTimeoutMillis: number;
}

/**
 * A BatchSpanProcessor whose queue this class bounds and counts itself: it mirrors the queue length
 * (spans in, minus spans handed to the exporter), so a span that would not fit is dropped here and
 * counted rather than silently discarded inside the SDK.
 */
export class BoundedBatchProcessor implements SpanProcessor {
  readonly #batch: BatchSpanProcessor;
  readonly #max: number;
  readonly #counters: ExportCounters;
  #queued = 0;

  constructor(exporter: SpanExporter, options: BoundedExportOptions, counters: ExportCounters) {
    this.#max = options.maxQueueSize;
    this.#counters = counters;
    const counting: SpanExporter = {
      export: (spans, done) => {
        this.#queued -= spans.length;
        exporter.export(spans, (result: ExportResult) => {
          if (result.code === ExportResultCode.SUCCESS) counters.exported(spans.length);
          else counters.dropped(spans.length, 'export_failed', result.error);
          done(result);
        });
      },
      shutdown: () => exporter.shutdown(),
      forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
    };
    this.#batch = new BatchSpanProcessor(counting, { ...options });
  }

  /** Spans waiting for export. */
  get queued(): number {
    return this.#queued;
  }

  onStart(span: Span, parentContext: Context): void {
    this.#batch.onStart(span, parentContext);
  }

  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#queued >= this.#max) {
      this.#counters.dropped(1, 'queue_full');
      return;
    }
    this.#queued++;
    this.#batch.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.#batch.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.#batch.shutdown();
  }
}
