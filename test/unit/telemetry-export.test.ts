import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { AlwaysOnSampler, BasicTracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { isMeshError } from '../../sidecar/errors.ts';
import { BoundedBatchProcessor, configuredOtlpEndpoint } from '../../sidecar/telemetry/export.ts';

describe('OTLP endpoint resolution', () => {
  it('prefers the config, then the traces-specific variable as given, then the base variable plus /v1/traces', () => {
    const env = { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/custom', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318' };
    expect(configuredOtlpEndpoint('http://cfg:4318/v1/traces', env)).toEqual({ url: 'http://cfg:4318/v1/traces', source: 'config' });
    expect(configuredOtlpEndpoint(undefined, env)).toEqual({ url: 'http://collector:4318/custom', source: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' });
    expect(configuredOtlpEndpoint(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://base:4318' })?.url).toBe('http://base:4318/v1/traces');
    expect(configuredOtlpEndpoint(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'https://base:4318/otlp/' })?.url).toBe('https://base:4318/otlp/v1/traces');
    expect(configuredOtlpEndpoint(undefined, {})).toBeUndefined();
    expect(configuredOtlpEndpoint(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: '  ' })).toBeUndefined();
  });

  it('rejects a malformed variable with an error naming it', () => {
    for (const value of ['not a url', 'ftp://collector:21']) {
      let caught: unknown;
      try {
        configuredOtlpEndpoint(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: value });
      } catch (err) {
        caught = err;
      }
      expect(isMeshError(caught, 'CONFIG_INVALID')).toBe(true);
      expect((caught as Error).message).toContain('OTEL_EXPORTER_OTLP_ENDPOINT');
    }
  });
});

/** An exporter that holds every export until the test answers it. */
function heldExporter() {
  const pending: Array<{ spans: ReadableSpan[]; done: (r: ExportResult) => void }> = [];
  const exporter: SpanExporter = {
    export: (spans, done) => void pending.push({ spans, done }),
    shutdown: async () => undefined,
  };
  return { exporter, pending };
}

function counters() {
  const seen = { exported: 0, queueFull: 0, failed: 0 };
  return {
    seen,
    counters: {
      exported: (n: number) => void (seen.exported += n),
      dropped: (n: number, reason: 'queue_full' | 'export_failed') => void (reason === 'queue_full' ? (seen.queueFull += n) : (seen.failed += n)),
    },
  };
}

describe('BoundedBatchProcessor', () => {
  it('drops and counts spans that end while the queue is full, and counts export outcomes', async () => {
    const { exporter, pending } = heldExporter();
    const { seen, counters: c } = counters();
    // Batch size 1: the first span goes straight to the exporter, which then holds it.
    const processor = new BoundedBatchProcessor(exporter, { maxQueueSize: 3, maxExportBatchSize: 1, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000 }, c);
    const tracer = new BasicTracerProvider({ sampler: new AlwaysOnSampler(), spanProcessors: [processor] }).getTracer('t');
    for (let i = 0; i < 10; i++) tracer.startSpan(`s${i}`).end();
    expect(pending).toHaveLength(1);
    expect(processor.queued).toBe(3);
    expect(seen.queueFull).toBe(6);

    pending[0]!.done({ code: ExportResultCode.SUCCESS });
    await new Promise((r) => setImmediate(r));
    expect(seen.exported).toBe(1);
    expect(pending).toHaveLength(2);
    pending[1]!.done({ code: ExportResultCode.FAILED, error: new Error('collector down') });
    await new Promise((r) => setImmediate(r));
    expect(seen.failed).toBe(1);
    expect(processor.queued).toBe(1);
  });

  it('ignores unsampled spans', () => {
    const { exporter, pending } = heldExporter();
    const { seen, counters: c } = counters();
    const processor = new BoundedBatchProcessor(exporter, { maxQueueSize: 1, maxExportBatchSize: 1, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000 }, c);
    const provider = new BasicTracerProvider({ sampler: { shouldSample: () => ({ decision: 0 }), toString: () => 'never' }, spanProcessors: [processor] });
    for (let i = 0; i < 5; i++) provider.getTracer('t').startSpan('x').end();
    expect(pending).toHaveLength(0);
    expect(seen.queueFull).toBe(0);
  });
});
