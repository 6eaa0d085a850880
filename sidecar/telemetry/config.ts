/**
 * Configuration of tracing and metrics (the `telemetry` section). Logging keeps its own `logging`
 * section in schema.ts. Defaults follow the OpenTelemetry SDK's where one exists.
 */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_SAMPLE_RATIO = 1;
export const DEFAULT_TRACE_QUEUE_SIZE = 2048;
export const DEFAULT_TRACE_BATCH_SIZE = 512;
export const DEFAULT_TRACE_BATCH_DELAY_MS = 5000;
export const DEFAULT_TRACE_EXPORT_TIMEOUT_MS = 10_000;
/** Request latency buckets in seconds: sub-millisecond proxy hops up to slow upstreams. */
export const DEFAULT_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Trace context formats read from incoming requests; `b3` accepts both the single and the multi-header form. */
export const ACCEPT_FORMATS = ['tracecontext', 'b3'] as const;
/** Trace context formats written on requests leaving the sidecar. */
export const EMIT_FORMATS = ['tracecontext', 'b3', 'b3multi'] as const;

const otlpUrl = () =>
  z
    .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
    .describe('OTLP/HTTP traces URL, used as given (e.g. http://127.0.0.1:4318/v1/traces)');

const propagationSchema = z
  .strictObject({
    accept: z
      .array(z.enum(ACCEPT_FORMATS))
      .default(['tracecontext'])
      .describe('Incoming trace context formats, tried in order (tracecontext = W3C traceparent; b3 = B3 single or multi header); [] starts every trace here'),
    emit: z
      .array(z.enum(EMIT_FORMATS))
      .min(1, { error: 'expected at least one of tracecontext, b3, b3multi' })
      .default(['tracecontext'])
      .describe('Trace context formats written on forwarded requests (tracecontext, b3 single header, b3multi)'),
  })
  .prefault({})
  .describe('Trace context propagation (default: W3C in and out)');

export const tracingSchema = z
  .strictObject({
    enabled: z.boolean().optional().describe('Record and export spans (default: on when an endpoint is set here or in OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT)'),
    endpoint: otlpUrl().optional(),
    serviceName: z.string().min(1).optional().describe('service.name of the spans (default: service.name of this sidecar)'),
    sampleRatio: z
      .number({ error: 'expected a number from 0 to 1' })
      .min(0, { error: 'expected a number from 0 to 1' })
      .max(1, { error: 'expected a number from 0 to 1' })
      .default(DEFAULT_SAMPLE_RATIO)
      .describe('Share of new traces recorded (head sampling); a caller\'s sampling decision always wins (default 1)'),
    propagation: propagationSchema,
    maxQueueSize: z.int().min(1).max(1_000_000).default(DEFAULT_TRACE_QUEUE_SIZE).describe(`Finished spans waiting for export; beyond it spans are dropped and counted (default ${DEFAULT_TRACE_QUEUE_SIZE})`),
    maxExportBatchSize: z.int().min(1).max(1_000_000).default(DEFAULT_TRACE_BATCH_SIZE).describe(`Spans per export request, at most maxQueueSize (default ${DEFAULT_TRACE_BATCH_SIZE})`),
    batchDelay: duration(DEFAULT_TRACE_BATCH_DELAY_MS, 'Longest wait before a partial batch is exported'),
    exportTimeout: duration(DEFAULT_TRACE_EXPORT_TIMEOUT_MS, 'An export request taking longer is abandoned and its spans counted as failed'),
  })
  .refine((t) => t.maxExportBatchSize <= t.maxQueueSize, { path: ['maxExportBatchSize'], error: 'must not exceed maxQueueSize' })
  .prefault({})
  .describe('OpenTelemetry tracing, exported over OTLP/HTTP');

export const metricsSchema = z
  .strictObject({
    latencyBuckets: z
      .array(z.number().positive())
      .min(1)
      .refine((b) => b.every((v, i) => i === 0 || v > b[i - 1]!), { error: 'expected strictly increasing seconds' })
      .default(DEFAULT_LATENCY_BUCKETS)
      .describe('Histogram buckets (seconds) of meshlet_request_duration_seconds'),
    processMetrics: z.boolean().default(true).describe('Also expose process_* and nodejs_* metrics (default true)'),
  })
  .prefault({})
  .describe('Prometheus metrics on the admin listener at /metrics');

export const telemetrySchema = z
  .strictObject({ tracing: tracingSchema, metrics: metricsSchema })
  .prefault({})
  .describe('Traces (OpenTelemetry) and metrics (Prometheus)');

export type TracingConfig = z.infer<typeof tracingSchema>;
export type MetricsConfig = z.infer<typeof metricsSchema>;
export type TelemetryConfig = z.infer<typeof telemetrySchema>;
export type AcceptFormat = (typeof ACCEPT_FORMATS)[number];
export type EmitFormat = (typeof EMIT_FORMATS)[number];
