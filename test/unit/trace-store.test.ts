import { describe, expect, it } from 'vitest';
import { OtlpFormatError, parseOtlpTraces, type StoredSpan } from '../../sidecar/telemetry/otlp-json.ts';
import { TraceStore } from '../../sidecar/telemetry/trace-store.ts';

const T1 = '4bf92f3577b34da6a3ce929d0e0e4736';
const T2 = '0af7651916cd43dd8448eb211c80319c';
const BASE_NS = 1_764_036_000_000_000_000n;

/** An OTLP JSON span as the OpenTelemetry JS exporter writes it. */
function otlpSpan(traceId: string, spanId: string, parentSpanId: string | undefined, name: string, startMs: number, endMs: number, extra: Record<string, unknown> = {}) {
  return {
    traceId,
    spanId,
    ...(parentSpanId ? { parentSpanId } : {}),
    name,
    kind: 2,
    startTimeUnixNano: String(BASE_NS + BigInt(startMs * 1_000_000)),
    endTimeUnixNano: String(BASE_NS + BigInt(endMs * 1_000_000)),
    attributes: [{ key: 'url.path', value: { stringValue: '/hello' } }, { key: 'http.response.status_code', value: { intValue: 200 } }],
    status: { code: 0 },
    ...extra,
  };
}

function exportRequest(service: string, spans: unknown[]) {
  return { resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] }, scopeSpans: [{ scope: { name: 'meshlet' }, spans }] }] };
}

function span(traceId: string, spanId: string, parent?: string, startMs = 0): StoredSpan {
  return { traceId, spanId, parentSpanId: parent, name: `op ${spanId}`, kind: 'server', service: 'svc', startMs: 1000 + startMs, endMs: 1010 + startMs, status: 'unset', statusMessage: undefined, attributes: {} };
}

describe('OTLP JSON parsing', () => {
  it('reads ids, times, kind, status, service and attributes', () => {
    const [s] = parseOtlpTraces(exportRequest('frontend', [otlpSpan(T1, 'aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb', 'GET greeter', 0, 12.5, { kind: 3, status: { code: 2, message: 'boom' } })]));
    expect(s).toMatchObject({ traceId: T1, spanId: 'aaaaaaaaaaaaaaaa', parentSpanId: 'bbbbbbbbbbbbbbbb', name: 'GET greeter', kind: 'client', service: 'frontend', status: 'error', statusMessage: 'boom' });
    expect(s!.endMs - s!.startMs).toBeCloseTo(12.5, 3);
    expect(s!.attributes).toEqual({ 'url.path': '/hello', 'http.response.status_code': 200 });
  });

  it('accepts enum names and numeric times', () => {
    const raw = otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'x', 0, 1, { kind: 'SPAN_KIND_SERVER', status: { code: 'STATUS_CODE_OK' }, startTimeUnixNano: 1e18, endTimeUnixNano: 1e18 + 1e6 });
    const [s] = parseOtlpTraces(exportRequest('a', [raw]));
    expect(s).toMatchObject({ kind: 'server', status: 'ok', parentSpanId: undefined });
  });

  it.each([
    ['not an object', [], 'body: expected a JSON object'],
    ['no resourceSpans', {}, 'resourceSpans: expected an array, got nothing'],
    ['bad trace id', exportRequest('a', [otlpSpan('xyz', 'aaaaaaaaaaaaaaaa', undefined, 'x', 0, 1)]), 'resourceSpans[0].scopeSpans[0].spans[0].traceId: expected 32 hex digits, not all zero, got "xyz"'],
    ['zero span id', exportRequest('a', [otlpSpan(T1, '0000000000000000', undefined, 'x', 0, 1)]), 'spans[0].spanId: expected 16 hex digits'],
    ['bad time', exportRequest('a', [{ ...otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'x', 0, 1), startTimeUnixNano: 'soon' }]), 'spans[0].startTimeUnixNano: expected a time in nanoseconds'],
    ['end before start', exportRequest('a', [otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'x', 5, 1)]), 'spans[0].endTimeUnixNano: expected a time not before startTimeUnixNano'],
    ['bad attribute', exportRequest('a', [{ ...otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'x', 0, 1), attributes: [{ value: {} }] }]), 'spans[0].attributes[0]: expected a {"key": ..., "value": ...} object'],
    ['bad kind', exportRequest('a', [{ ...otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'x', 0, 1), kind: 9 }]), 'spans[0].kind: expected a span kind'],
  ])('rejects %s, naming the field', (_what, body, message) => {
    expect(() => parseOtlpTraces(body)).toThrow(OtlpFormatError);
    expect(() => parseOtlpTraces(body)).toThrow(message);
  });

  it('takes a request whole or not at all', () => {
    const body = exportRequest('a', [otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'x', 0, 1), otlpSpan(T1, 'nothex', undefined, 'y', 0, 1)]);
    expect(() => parseOtlpTraces(body)).toThrow('spans[1].spanId');
  });

  it('cuts long attribute strings', () => {
    const raw = { ...otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'x', 0, 1), attributes: [{ key: 'big', value: { stringValue: 'x'.repeat(5000) } }] };
    const [s] = parseOtlpTraces(exportRequest('a', [raw]));
    expect((s!.attributes.big as string).length).toBe(1024);
  });
});

describe('TraceStore', () => {
  it('assembles spans of one trace from several services and batches, in tree order with parent links', () => {
    const store = new TraceStore({ maxTraces: 10, maxSpansPerTrace: 100 });
    // The greeter sidecar's export arrives before the frontend's: children before their parents.
    store.add(parseOtlpTraces(exportRequest('greeter', [otlpSpan(T1, 'cccccccccccccccc', 'bbbbbbbbbbbbbbbb', 'GET inbound', 2, 8)])));
    store.add(
      parseOtlpTraces(exportRequest('frontend', [otlpSpan(T1, 'aaaaaaaaaaaaaaaa', undefined, 'GET greeter', 0, 10), otlpSpan(T1, 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa', 'GET greeter', 1, 9, { kind: 3 })])),
    );
    const trace = store.get(T1)!;
    expect(trace.spans.map((s) => [s.service, s.spanId, s.parentSpanId, s.depth, s.parentMissing])).toEqual([
      ['frontend', 'aaaaaaaaaaaaaaaa', null, 0, false],
      ['frontend', 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa', 1, false],
      ['greeter', 'cccccccccccccccc', 'bbbbbbbbbbbbbbbb', 2, false],
    ]);
    expect(trace.spans.map((s) => s.offsetMs)).toEqual([0, 1, 2]);
    expect(trace.durationMs).toBe(10);
    expect(trace.services).toEqual(['greeter', 'frontend']);
    expect(store.list()[0]).toMatchObject({ traceId: T1, name: 'GET greeter', service: 'frontend', spanCount: 3 });
  });

  it('marks a span whose parent has not arrived', () => {
    const store = new TraceStore({ maxTraces: 10, maxSpansPerTrace: 100 });
    store.add([span(T1, 'cccccccccccccccc', 'bbbbbbbbbbbbbbbb')]);
    expect(store.get(T1)!.spans[0]).toMatchObject({ parentSpanId: 'bbbbbbbbbbbbbbbb', parentMissing: true, depth: 0 });
  });

  it('keeps at most maxTraces, dropping the least recently updated', () => {
    const store = new TraceStore({ maxTraces: 2, maxSpansPerTrace: 100 });
    const T3 = 'ffffffffffffffffffffffffffffffff';
    store.add([span(T1, 'aaaaaaaaaaaaaaaa', undefined, 0)]);
    store.add([span(T2, 'aaaaaaaaaaaaaaaa', undefined, 1)]);
    // T1 gets a new span: T2 is now the least recently updated.
    store.add([span(T1, 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa', 2)]);
    store.add([span(T3, 'aaaaaaaaaaaaaaaa', undefined, 3)]);
    expect(store.size).toBe(2);
    expect(store.evicted).toBe(1);
    expect(store.get(T2)).toBeUndefined();
    // Newest start first.
    expect(store.list().map((t) => t.traceId)).toEqual([T3, T1]);
  });

  it('counts spans over maxSpansPerTrace and ignores duplicates', () => {
    const store = new TraceStore({ maxTraces: 2, maxSpansPerTrace: 2 });
    const result = store.add([span(T1, 'aaaaaaaaaaaaaaaa'), span(T1, 'aaaaaaaaaaaaaaaa'), span(T1, 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa'), span(T1, 'cccccccccccccccc', 'aaaaaaaaaaaaaaaa')]);
    expect(result).toEqual({ stored: 2, duplicates: 1, dropped: 1 });
    expect(store.get(T1)).toMatchObject({ spanCount: 2, droppedSpans: 1 });
  });

  it('survives a parent cycle in malformed input', () => {
    const store = new TraceStore({ maxTraces: 2, maxSpansPerTrace: 10 });
    store.add([span(T1, 'aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb'), span(T1, 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa', 1)]);
    expect(store.get(T1)!.spans.map((s) => s.spanId).sort()).toEqual(['aaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbb']);
  });
});
