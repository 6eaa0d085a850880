import { ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import { TracePropagation, traceIdFromHeaders } from '../../sidecar/telemetry/propagation.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

describe('trace context propagation', () => {
  it('extracts from the first accepted format that holds a valid context', () => {
    const both = new TracePropagation(['b3', 'tracecontext'], ['tracecontext']);
    const headers = { traceparent: `00-${TRACE}-${SPAN}-01`, b3: `80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0` };
    expect(trace.getSpanContext(both.extract(headers))).toMatchObject({ traceId: '80f198ee56343ba864fe8b2a57d3eff7', spanId: 'e457b5a2e4d86bd1', traceFlags: TraceFlags.NONE, isRemote: true });
    // An invalid B3 header falls through to W3C.
    expect(trace.getSpanContext(both.extract({ ...headers, b3: 'garbage' }))?.traceId).toBe(TRACE);
  });

  it('ignores formats it was not told to accept', () => {
    const w3cOnly = new TracePropagation(['tracecontext'], ['tracecontext']);
    expect(w3cOnly.extract({ 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' })).toBe(ROOT_CONTEXT);
    expect(new TracePropagation([], ['tracecontext']).extract({ traceparent: `00-${TRACE}-${SPAN}-01` })).toBe(ROOT_CONTEXT);
    // A malformed header starts a new trace rather than failing the request.
    for (const bad of ['garbage', `00-${TRACE}-0000000000000000-01`, `00-${TRACE.toUpperCase()}-${SPAN}`]) expect(w3cOnly.extract({ traceparent: bad })).toBe(ROOT_CONTEXT);
  });

  it('replaces every trace header with the emitted formats', () => {
    const p = new TracePropagation(['tracecontext'], ['b3multi']);
    const ctx = trace.setSpanContext(ROOT_CONTEXT, { traceId: TRACE, spanId: SPAN, traceFlags: TraceFlags.SAMPLED });
    const headers: Record<string, string | string[]> = { traceparent: 'stale', tracestate: 'stale', b3: 'stale', 'x-b3-parentspanid': 'stale', other: 'kept' };
    p.inject(ctx, headers);
    expect(headers).toEqual({ other: 'kept', 'x-b3-traceid': TRACE, 'x-b3-spanid': SPAN, 'x-b3-sampled': '1' });
  });

  it('reads a trace id from W3C or B3 headers for the access log', () => {
    expect(traceIdFromHeaders({ traceparent: `00-${TRACE}-${SPAN}-01` })).toBe(TRACE);
    expect(traceIdFromHeaders({ traceparent: `00-00000000000000000000000000000000-${SPAN}-01` })).toBeUndefined();
    expect(traceIdFromHeaders({ b3: `${TRACE}-${SPAN}-1` })).toBe(TRACE);
    expect(traceIdFromHeaders({ b3: '0' })).toBeUndefined();
    expect(traceIdFromHeaders({ 'x-b3-traceid': 'a2fb4a1d1a96d312' })).toBe('a2fb4a1d1a96d312');
    expect(traceIdFromHeaders({ 'x-b3-traceid': 'nothex' })).toBeUndefined();
    expect(traceIdFromHeaders({})).toBeUndefined();
  });
});
