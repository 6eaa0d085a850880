/**
 * A bounded in-memory store of recent traces, so a laptop mesh (or one pod) can look at whole traces
 * without running Jaeger: sidecars export OTLP/HTTP JSON to one admin API, which assembles spans from
 * every hop by trace id. Traces live in a ring ordered by last update: past `maxTraces` the least
 * recently updated one goes; past `maxSpansPerTrace` a trace counts further spans instead of keeping them.
 */
import type { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { AttributeValue, SpanKindName, SpanStatusName, StoredSpan } from './otlp-json.ts';

export interface TraceStoreLimits {
  readonly maxTraces: number;
  readonly maxSpansPerTrace: number;
}

interface StoredTrace {
  readonly traceId: string;
  readonly spans: Map<string, StoredSpan>;
  droppedSpans: number;
}

/** One line of `GET /traces`. */
export interface TraceSummary {
  readonly traceId: string;
  /** Name and service of the root span (or of the earliest span when the root is not here yet). */
  readonly name: string;
  readonly service: string;
  readonly services: string[];
  readonly spanCount: number;
  readonly errorCount: number;
  readonly droppedSpans: number;
  readonly startTime: string;
  readonly durationMs: number;
}

/** A span as `GET /traces/<id>` shows it, in tree order. */
export interface TraceSpanView {
  readonly spanId: string;
  readonly parentSpanId: string | null;
  /** True when the span names a parent this store has not seen (not exported, or still to come). */
  readonly parentMissing: boolean;
  readonly depth: number;
  readonly name: string;
  readonly kind: SpanKindName;
  readonly service: string;
  readonly startTime: string;
  /** Milliseconds from the start of the trace. */
  readonly offsetMs: number;
  readonly durationMs: number;
  readonly status: SpanStatusName;
  readonly statusMessage?: string;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

export interface TraceDetail extends Omit<TraceSummary, 'name' | 'service'> {
  readonly spans: TraceSpanView[];
}

/** What one `add` did, for the OTLP response (partial success) and tests. */
export interface AddResult {
  readonly stored: number;
  /** Spans already stored (a sidecar exporting to its own admin, or a retried export). */
  readonly duplicates: number;
  /** Spans over `maxSpansPerTrace`. */
  readonly dropped: number;
}

// The OpenTelemetry enum values (SpanKind, SpanStatusCode, TraceFlags.SAMPLED), fixed by the OTLP spec,
// written out so the store (always on, for admin /traces) does not load @opentelemetry/api.
const KIND_NAMES: Record<SpanKind, SpanKindName> = {
  0: 'internal',
  1: 'server',
  2: 'client',
  3: 'producer',
  4: 'consumer',
};
const STATUS_OK = 1;
const STATUS_ERROR = 2;
const TRACE_FLAG_SAMPLED = 1;

const round = (ms: number) => Math.round(ms * 1000) / 1000;

function bounds(trace: StoredTrace): { start: number; end: number } {
  let start = Infinity;
  let end = -Infinity;
  for (const s of trace.spans.values()) {
    if (s.startMs < start) start = s.startMs;
    if (s.endMs > end) end = s.endMs;
  }
  return { start, end };
}

/** What a trace's list row and its detail view share. */
function totals(trace: StoredTrace, spans: readonly StoredSpan[], start: number, end: number): Omit<TraceDetail, 'spans'> {
  return {
    traceId: trace.traceId,
    services: [...new Set(spans.map((s) => s.service))],
    spanCount: spans.length,
    errorCount: spans.filter((s) => s.status === 'error').length,
    droppedSpans: trace.droppedSpans,
    startTime: new Date(start).toISOString(),
    durationMs: round(end - start),
  };
}

export class TraceStore {
  readonly #limits: TraceStoreLimits;
  /** Insertion order is update order: the first entry is the least recently updated trace. */
  readonly #traces = new Map<string, StoredTrace>();
  #evicted = 0;

  constructor(limits: TraceStoreLimits) {
    this.#limits = limits;
  }

  /** Traces held now. */
  get size(): number {
    return this.#traces.size;
  }

  /** Traces dropped so far to stay within `maxTraces`. */
  get evicted(): number {
    return this.#evicted;
  }

  /** Adds finished spans, grouping them by trace; keeps the store within its limits. */
  add(spans: Iterable<StoredSpan>): AddResult {
    let stored = 0;
    let duplicates = 0;
    let dropped = 0;
    for (const span of spans) {
      let trace = this.#traces.get(span.traceId);
      if (trace) {
        // Move to the newest end of the ring.
        this.#traces.delete(span.traceId);
      } else {
        trace = { traceId: span.traceId, spans: new Map(), droppedSpans: 0 };
      }
      this.#traces.set(span.traceId, trace);
      if (trace.spans.has(span.spanId)) duplicates++;
      else if (trace.spans.size >= this.#limits.maxSpansPerTrace) {
        trace.droppedSpans++;
        dropped++;
      } else {
        trace.spans.set(span.spanId, span);
        stored++;
      }
      while (this.#traces.size > this.#limits.maxTraces) {
        const oldest = this.#traces.keys().next().value as string;
        this.#traces.delete(oldest);
        this.#evicted++;
      }
    }
    return { stored, duplicates, dropped };
  }

  /** Summaries of the traces held, newest start first. */
  list(limit = Infinity): TraceSummary[] {
    const rows: Array<TraceSummary & { start: number }> = [];
    for (const trace of this.#traces.values()) {
      const { start, end } = bounds(trace);
      const spans = [...trace.spans.values()];
      const root = spans.filter((s) => s.parentSpanId === undefined || !trace.spans.has(s.parentSpanId)).sort((a, b) => a.startMs - b.startMs)[0]!;
      rows.push({
        ...totals(trace, spans, start, end),
        name: root.name,
        service: root.service,
        start,
      });
    }
    rows.sort((a, b) => b.start - a.start);
    return rows.slice(0, limit).map(({ start: _start, ...row }) => row);
  }

  /** One trace with its spans in tree order (each parent before its children, siblings by start). */
  get(traceId: string): TraceDetail | undefined {
    const trace = this.#traces.get(traceId.toLowerCase());
    if (!trace) return undefined;
    const { start, end } = bounds(trace);
    const children = new Map<string | undefined, StoredSpan[]>();
    for (const span of trace.spans.values()) {
      const parent = span.parentSpanId !== undefined && trace.spans.has(span.parentSpanId) && span.parentSpanId !== span.spanId ? span.parentSpanId : undefined;
      const list = children.get(parent) ?? [];
      list.push(span);
      children.set(parent, list);
    }
    for (const list of children.values()) list.sort((a, b) => a.startMs - b.startMs);
    const views: TraceSpanView[] = [];
    const visited = new Set<string>();
    const walk = (span: StoredSpan, depth: number) => {
      if (visited.has(span.spanId)) return;
      visited.add(span.spanId);
      views.push({
        spanId: span.spanId,
        parentSpanId: span.parentSpanId ?? null,
        parentMissing: span.parentSpanId !== undefined && !trace.spans.has(span.parentSpanId),
        depth,
        name: span.name,
        kind: span.kind,
        service: span.service,
        startTime: new Date(span.startMs).toISOString(),
        offsetMs: round(span.startMs - start),
        durationMs: round(span.endMs - span.startMs),
        status: span.status,
        ...(span.statusMessage !== undefined ? { statusMessage: span.statusMessage } : {}),
        attributes: span.attributes,
      });
      for (const child of children.get(span.spanId) ?? []) walk(child, depth + 1);
    };
    for (const root of children.get(undefined) ?? []) walk(root, 0);
    // Spans caught in a parent cycle (malformed input) are still shown, at the top level.
    for (const span of [...trace.spans.values()].sort((a, b) => a.startMs - b.startMs)) walk(span, 0);
    const spans = [...trace.spans.values()];
    return { ...totals(trace, spans, start, end), spans: views };
  }

  /** A span processor that keeps this sidecar's own sampled spans here, whatever the exporter does. */
  processor(): SpanProcessor {
    return {
      onStart: () => {},
      onEnd: (span: ReadableSpan) => {
        if ((span.spanContext().traceFlags & TRACE_FLAG_SAMPLED) === 0) return;
        this.add([fromReadableSpan(span)]);
      },
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
    };
  }
}

const hrToMs = (t: readonly [number, number]) => t[0] * 1000 + Math.floor(t[1] / 1000) / 1000;

/** A span recorded by this process, in the store's form (attributes are shared, not copied: ended spans do not change). */
export function fromReadableSpan(span: ReadableSpan): StoredSpan {
  const ctx = span.spanContext();
  const service = span.resource.attributes['service.name'];
  const status: SpanStatusName = (span.status.code as number) === STATUS_ERROR ? 'error' : (span.status.code as number) === STATUS_OK ? 'ok' : 'unset';
  return {
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    parentSpanId: span.parentSpanContext?.spanId,
    name: span.name,
    kind: KIND_NAMES[span.kind] ?? 'unspecified',
    service: typeof service === 'string' ? service : 'unknown_service',
    startMs: hrToMs(span.startTime),
    endMs: hrToMs(span.endTime),
    status,
    statusMessage: span.status.message || undefined,
    attributes: span.attributes as Record<string, AttributeValue>,
  };
}
