/**
 * Getting spans out without ever holding up a request: the OTLP endpoint (config, then the standard
 * OTEL_* variables), and a BatchSpanProcessor behind a counted, bounded queue. Ending a span only
 * appends to the queue; a full queue drops the span and counts it; exports run in the background.
 */
import { TraceFlags, type Context } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { BatchSpanProcessor, type ReadableSpan, type Span, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';

export { configuredOtlpEndpoint, DEFAULT_OTLP_TRACES_URL, type ExportCounters, type ResolvedEndpoint } from './trace-context.ts';
import type { ExportCounters } from './trace-context.ts';

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
