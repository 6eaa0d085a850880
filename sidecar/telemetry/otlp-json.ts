/**
 * Reading OTLP/HTTP JSON trace exports (ExportTraceServiceRequest) into plain span records, for the
 * admin API's trace store. Validation is strict about what the store relies on (ids, times) and names
 * the offending field, e.g. `resourceSpans[0].scopeSpans[0].spans[2].traceId: expected 32 hex digits`;
 * it is lenient about the rest (unknown fields are ignored, enums may be numbers or names).
 */

export const SPAN_KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'] as const;
export type SpanKindName = (typeof SPAN_KINDS)[number];
export type SpanStatusName = 'unset' | 'ok' | 'error';
export type AttributeValue = string | number | boolean | null | AttributeValue[] | { [key: string]: AttributeValue };

/** One finished span, whichever sidecar (or app) recorded it. */
export interface StoredSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** Undefined for a root span. */
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: SpanKindName;
  /** `service.name` of the resource that recorded the span. */
  readonly service: string;
  /** Epoch milliseconds, microsecond precision. */
  readonly startMs: number;
  readonly endMs: number;
  readonly status: SpanStatusName;
  readonly statusMessage: string | undefined;
  readonly attributes: Readonly<Record<string, AttributeValue>>;
}

/** A request body that is not a valid OTLP JSON trace export; `message` names the field. */
export class OtlpFormatError extends Error {
  override name = 'OtlpFormatError';
}

/** Longest attribute string kept; the rest is cut (span attributes may carry user data). */
export const MAX_ATTRIBUTE_CHARS = 1024;
/** Attributes kept per span (resource and span attributes together). */
export const MAX_ATTRIBUTES = 128;
/** Longest span or service name kept. */
const MAX_NAME_CHARS = 256;
const ID_32 = /^[\da-fA-F]{32}$/;
const ID_16 = /^[\da-fA-F]{16}$/;
const STATUS_NAMES: Record<string, SpanStatusName> = { STATUS_CODE_UNSET: 'unset', STATUS_CODE_OK: 'ok', STATUS_CODE_ERROR: 'error' };

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function fail(path: string, expected: string, got: unknown): never {
  throw new OtlpFormatError(`${path}: expected ${expected}, got ${describe(got)}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function array(value: unknown, path: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail(path, 'an array', value);
  return value;
}

function cut(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function hexId(value: unknown, path: string, pattern: RegExp, digits: number): string {
  if (typeof value !== 'string' || !pattern.test(value) || /^0+$/.test(value)) fail(path, `${digits} hex digits, not all zero`, value);
  return value.toLowerCase();
}

/** Nanoseconds since the epoch (decimal string or number) as epoch milliseconds with microsecond precision. */
function nanosToMs(value: unknown, path: string): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return Math.floor(value / 1000) / 1000;
  if (typeof value === 'string' && /^\d{1,20}$/.test(value)) return Number(BigInt(value) / 1000n) / 1000;
  return fail(path, 'a time in nanoseconds since the epoch (decimal string or number)', value);
}

function anyValue(value: unknown, path: string, depth = 0): AttributeValue {
  if (!isObject(value)) return fail(path, 'an AnyValue object such as {"stringValue": "..."}', value);
  if (typeof value.stringValue === 'string') return cut(value.stringValue, MAX_ATTRIBUTE_CHARS);
  if (typeof value.boolValue === 'boolean') return value.boolValue;
  if (value.intValue !== undefined) {
    const n = Number(value.intValue);
    if ((typeof value.intValue !== 'string' && typeof value.intValue !== 'number') || !Number.isFinite(n)) fail(`${path}.intValue`, 'an integer', value.intValue);
    return n;
  }
  if (value.doubleValue !== undefined) {
    const n = typeof value.doubleValue === 'string' ? Number(value.doubleValue) : value.doubleValue;
    if (typeof n !== 'number' || Number.isNaN(n)) fail(`${path}.doubleValue`, 'a number', value.doubleValue);
    return n;
  }
  if (typeof value.bytesValue === 'string') return cut(value.bytesValue, MAX_ATTRIBUTE_CHARS);
  if (depth >= 4) return '[nested too deep]';
  if (isObject(value.arrayValue)) return array(value.arrayValue.values, `${path}.arrayValue.values`).slice(0, 64).map((v, i) => anyValue(v, `${path}.arrayValue.values[${i}]`, depth + 1));
  if (isObject(value.kvlistValue)) {
    const out: Record<string, AttributeValue> = {};
    attributes(value.kvlistValue.values, `${path}.kvlistValue.values`, out, depth + 1);
    return out;
  }
  return null;
}

function attributes(value: unknown, path: string, into: Record<string, AttributeValue>, depth = 0): void {
  array(value, path).forEach((kv, i) => {
    if (!isObject(kv) || typeof kv.key !== 'string') fail(`${path}[${i}]`, 'a {"key": ..., "value": ...} object', kv);
    if (Object.keys(into).length >= MAX_ATTRIBUTES) return;
    into[cut(kv.key, MAX_NAME_CHARS)] = kv.value === undefined ? null : anyValue(kv.value, `${path}[${i}].value`, depth);
  });
}

function spanKind(value: unknown, path: string): SpanKindName {
  if (value === undefined || value === null) return 'unspecified';
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < SPAN_KINDS.length) return SPAN_KINDS[value]!;
  if (typeof value === 'string') {
    const name = value.replace(/^SPAN_KIND_/, '').toLowerCase();
    if ((SPAN_KINDS as readonly string[]).includes(name)) return name as SpanKindName;
  }
  return fail(path, 'a span kind (0-5 or SPAN_KIND_*)', value);
}

function spanStatus(value: unknown, path: string): { status: SpanStatusName; message: string | undefined } {
  if (value === undefined || value === null) return { status: 'unset', message: undefined };
  if (!isObject(value)) return fail(path, 'a status object', value);
  const { code, message } = value;
  let status: SpanStatusName | undefined;
  if (code === undefined || code === 0) status = 'unset';
  else if (code === 1) status = 'ok';
  else if (code === 2) status = 'error';
  else if (typeof code === 'string') status = STATUS_NAMES[code];
  if (!status) fail(`${path}.code`, 'a status code (0-2 or STATUS_CODE_*)', code);
  return { status, message: typeof message === 'string' && message !== '' ? cut(message, MAX_ATTRIBUTE_CHARS) : undefined };
}

function parseSpan(value: unknown, path: string, service: string): StoredSpan {
  if (!isObject(value)) return fail(path, 'a span object', value);
  const traceId = hexId(value.traceId, `${path}.traceId`, ID_32, 32);
  const spanId = hexId(value.spanId, `${path}.spanId`, ID_16, 16);
  const parent = value.parentSpanId;
  const parentSpanId = parent === undefined || parent === null || parent === '' ? undefined : hexId(parent, `${path}.parentSpanId`, ID_16, 16);
  if (typeof value.name !== 'string') fail(`${path}.name`, 'a string', value.name);
  const startMs = nanosToMs(value.startTimeUnixNano, `${path}.startTimeUnixNano`);
  const endMs = nanosToMs(value.endTimeUnixNano, `${path}.endTimeUnixNano`);
  if (endMs < startMs) fail(`${path}.endTimeUnixNano`, `a time not before startTimeUnixNano (${describe(value.startTimeUnixNano)})`, value.endTimeUnixNano);
  const attrs: Record<string, AttributeValue> = {};
  attributes(value.attributes, `${path}.attributes`, attrs);
  const { status, message } = spanStatus(value.status, `${path}.status`);
  return {
    traceId,
    spanId,
    parentSpanId,
    name: cut(value.name, MAX_NAME_CHARS),
    kind: spanKind(value.kind, `${path}.kind`),
    service,
    startMs,
    endMs,
    status,
    statusMessage: message,
    attributes: attrs,
  };
}

/**
 * Parses an OTLP JSON ExportTraceServiceRequest. Throws OtlpFormatError naming the first bad field;
 * a request is taken whole or not at all.
 */
export function parseOtlpTraces(body: unknown): StoredSpan[] {
  if (!isObject(body)) fail('body', 'a JSON object with "resourceSpans"', body);
  if (!Array.isArray(body.resourceSpans)) fail('resourceSpans', 'an array', body.resourceSpans);
  const spans: StoredSpan[] = [];
  body.resourceSpans.forEach((rs, i) => {
    const rsPath = `resourceSpans[${i}]`;
    if (!isObject(rs)) fail(rsPath, 'an object', rs);
    let service = 'unknown_service';
    if (rs.resource !== undefined && rs.resource !== null) {
      if (!isObject(rs.resource)) fail(`${rsPath}.resource`, 'an object', rs.resource);
      const resourceAttrs: Record<string, AttributeValue> = {};
      attributes(rs.resource.attributes, `${rsPath}.resource.attributes`, resourceAttrs);
      const name = resourceAttrs['service.name'];
      if (typeof name === 'string' && name !== '') service = cut(name, MAX_NAME_CHARS);
    }
    // `instrumentationLibrarySpans` is the pre-1.0 name some old exporters still send.
    const scopes = rs.scopeSpans ?? rs.instrumentationLibrarySpans;
    array(scopes, `${rsPath}.scopeSpans`).forEach((ss, j) => {
      const ssPath = `${rsPath}.scopeSpans[${j}]`;
      if (!isObject(ss)) fail(ssPath, 'an object', ss);
      array(ss.spans, `${ssPath}.spans`).forEach((span, k) => spans.push(parseSpan(span, `${ssPath}.spans[${k}]`, service)));
    });
  });
  return spans;
}
