/**
 * The parts of tracing every sidecar needs, with no OpenTelemetry import: the trace id a request
 * carries (access log, tap), the exchange note key of the SERVER span, and where the OTLP endpoint is
 * configured. The OpenTelemetry SDK (tracing.ts, export.ts, propagation.ts) is loaded only when tracing
 * is on (idle memory, docs/performance.md).
 */
import { meshError } from '../errors.ts';

/** `exchange.notes` key of the exchange's SERVER span (read by the access log for the trace id). */
export const TRACE_NOTE = 'trace';

type Headers = Record<string, string | string[] | undefined>;

const TRACEPARENT = /^[\da-f]{2}-([\da-f]{32})-[\da-f]{16}-[\da-f]{2}/;
const B3_SINGLE = /^([\da-f]{32}|[\da-f]{16})-/;

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The trace id a request carries, without tracing set up: lets the access log join a trace even
 * when this sidecar records no spans. W3C first, then B3.
 */
export function traceIdFromHeaders(headers: Headers): string | undefined {
  const traceparent = first(headers.traceparent);
  if (traceparent) {
    const match = TRACEPARENT.exec(traceparent);
    if (match && match[1] !== '00000000000000000000000000000000') return match[1];
  }
  const b3 = first(headers.b3);
  if (b3) {
    const match = B3_SINGLE.exec(b3);
    if (match) return match[1];
  }
  const b3TraceId = first(headers['x-b3-traceid']);
  return b3TraceId && /^([\da-f]{32}|[\da-f]{16})$/.test(b3TraceId) ? b3TraceId : undefined;
}

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
