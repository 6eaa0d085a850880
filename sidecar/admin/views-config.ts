/**
 * Configuration of the admin API's built-in views: the trace store behind `POST /v1/traces` and
 * `GET /traces`, and the live request stream `GET /tap`. Both are bounded so a busy mesh or a stuck
 * browser tab cannot grow the sidecar's memory.
 */
import { z } from 'zod';

export const DEFAULT_TRACE_STORE_TRACES = 200;
export const DEFAULT_TRACE_STORE_SPANS_PER_TRACE = 500;
export const DEFAULT_OTLP_MAX_REQUEST_BYTES = 4 * 1024 * 1024;
export const DEFAULT_TAP_MAX_BUFFERED_BYTES = 256 * 1024;

export const traceStoreSchema = z
  .strictObject({
    maxTraces: z.int().min(1).max(100_000).default(DEFAULT_TRACE_STORE_TRACES).describe(`Recent traces kept in memory; the least recently updated is dropped first (default ${DEFAULT_TRACE_STORE_TRACES})`),
    maxSpansPerTrace: z.int().min(1).max(100_000).default(DEFAULT_TRACE_STORE_SPANS_PER_TRACE).describe(`Spans kept per trace; later ones are counted as dropped (default ${DEFAULT_TRACE_STORE_SPANS_PER_TRACE})`),
    maxRequestBytes: z
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(DEFAULT_OTLP_MAX_REQUEST_BYTES)
      .describe('Largest OTLP/HTTP JSON body accepted at POST /v1/traces, after decompression; larger gets 413 (default 4 MiB)'),
  })
  .prefault({})
  .describe('In-memory store of recent traces for GET /traces and the dashboard, fed by POST /v1/traces and, with tracing on, by this sidecar');

export const tapSchema = z
  .strictObject({
    maxBufferedBytes: z
      .int()
      .min(1024)
      .max(64 * 1024 * 1024)
      .default(DEFAULT_TAP_MAX_BUFFERED_BYTES)
      .describe('Bytes queued for one GET /tap client before further events are skipped for it (and counted); never blocks requests (default 256 KiB)'),
  })
  .prefault({})
  .describe('Live request stream (GET /tap, meshlet tap, the dashboard)');

export type TraceStoreConfig = z.infer<typeof traceStoreSchema>;
export type TapConfig = z.infer<typeof tapSchema>;
