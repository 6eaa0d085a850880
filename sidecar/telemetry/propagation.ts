/**
 * Trace context in and out of HTTP headers: W3C traceparent/tracestate and B3 (single `b3` header or
 * the `x-b3-*` set), each only when configured. A hop rewrites every trace header it knows, so a
 * format it does not emit can never carry a stale parent past it.
 */
import { defaultTextMapGetter, defaultTextMapSetter, isSpanContextValid, ROOT_CONTEXT, trace, type Context, type TextMapPropagator } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import type { AcceptFormat, EmitFormat } from './config.ts';

type Headers = Record<string, string | string[] | undefined>;

/** Every header some supported format reads or writes. */
export const TRACE_HEADERS = ['traceparent', 'tracestate', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags'] as const;

function propagatorFor(format: AcceptFormat | EmitFormat): TextMapPropagator {
  switch (format) {
    case 'tracecontext':
      return new W3CTraceContextPropagator();
    case 'b3':
      // Extraction reads the single header first, then the multi-header form.
      return new B3Propagator({ injectEncoding: B3InjectEncoding.SINGLE_HEADER });
    case 'b3multi':
      return new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER });
  }
}

/** Reads and writes trace context in the configured formats. */
export class TracePropagation {
  readonly #accept: TextMapPropagator[];
  readonly #emit: TextMapPropagator[];

  constructor(accept: readonly AcceptFormat[], emit: readonly EmitFormat[]) {
    this.#accept = accept.map(propagatorFor);
    this.#emit = emit.map(propagatorFor);
  }

  /** The caller's trace context from the first accepted format that yields a valid one; ROOT_CONTEXT otherwise. */
  extract(headers: Headers): Context {
    for (const propagator of this.#accept) {
      const ctx = propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
      const spanContext = trace.getSpanContext(ctx);
      if (spanContext && isSpanContextValid(spanContext)) return ctx;
    }
    return ROOT_CONTEXT;
  }

  /** Replaces every trace header in `headers` with `ctx` written in the emitted formats. */
  inject(ctx: Context, headers: Record<string, string | string[]>): void {
    for (const name of TRACE_HEADERS) delete headers[name];
    for (const propagator of this.#emit) propagator.inject(ctx, headers, defaultTextMapSetter);
  }
}

export { traceIdFromHeaders } from './trace-context.ts';
