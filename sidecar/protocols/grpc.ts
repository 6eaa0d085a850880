/**
 * gRPC semantics at the proxy's edges: proxy-made failures become gRPC statuses (HTTP 200 with
 * `grpc-status` / `grpc-message`, as gRPC clients expect), and `grpc-timeout` becomes the deadline.
 * Status numbers are from grpc/doc/statuscodes.md; the HTTP-to-gRPC mapping follows
 * grpc/doc/http-grpc-status-mapping.md and Envoy's grpc_http1_bridge.
 */
import type { MeshletError } from '../errors.ts';

export const GRPC_STATUS = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** Key under which the call's final grpc-status (the app's or Meshlet's) is left in `exchange.notes` (access log). */
export const GRPC_STATUS_NOTE = 'grpc.status';

/** The gRPC status a proxy-made failure stands for. */
export function grpcStatusOf(err: Pick<MeshletError, 'reason' | 'status'>): number {
  switch (err.reason) {
    case 'upstream_timeout':
    case 'request_timeout':
      return GRPC_STATUS.DEADLINE_EXCEEDED;
    case 'unauthorized':
      return GRPC_STATUS.PERMISSION_DENIED;
    case 'rate_limited':
      return GRPC_STATUS.RESOURCE_EXHAUSTED;
    case 'bad_request':
    case 'headers_too_large':
      return GRPC_STATUS.INTERNAL;
    case 'internal':
    case 'config_invalid':
      return GRPC_STATUS.INTERNAL;
    default:
      // no_endpoint, upstream_connect, upstream_reset, circuit_open, overflow, peer_identity, shutting_down...
      return GRPC_STATUS.UNAVAILABLE;
  }
}

/** The gRPC status for an HTTP status an upstream answered a gRPC call with (no grpc-status of its own). */
export function grpcStatusOfHttp(status: number): number {
  if (status === 400) return GRPC_STATUS.INTERNAL;
  if (status === 401) return GRPC_STATUS.UNAUTHENTICATED;
  if (status === 403) return GRPC_STATUS.PERMISSION_DENIED;
  if (status === 404) return GRPC_STATUS.UNKNOWN;
  if (status === 429 || status === 502 || status === 503 || status === 504) return GRPC_STATUS.UNAVAILABLE;
  return GRPC_STATUS.UNKNOWN;
}

/** Headers (or trailers) carrying a proxy-made failure to a gRPC client. */
export function grpcErrorHeaders(err: MeshletError): Record<string, string> {
  return {
    'grpc-status': String(grpcStatusOf(err)),
    // grpc-message is percent-encoded (grpc/doc/PROTOCOL-HTTP2.md): encodeURIComponent is a superset.
    'grpc-message': encodeURIComponent(err.message),
    'x-meshlet-error': err.reason,
  };
}

/** Whether a request is a gRPC call (content-type application/grpc, +proto, +json...). */
export function isGrpcRequest(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  return value !== undefined && /^application\/grpc($|[+;])/i.test(value);
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * Milliseconds of a `grpc-timeout` header (`1*8DIGIT unit`, units H M S m u n), or undefined when
 * absent or malformed (a malformed one is ignored, like grpc-go does, rather than failing the call).
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * TIMEOUT_UNITS[match[2]!]!;
}
