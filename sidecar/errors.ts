/**
 * Every failure Meshlet itself produces. Each has a stable `code` (never reused, documented in
 * docs/errors.md), the HTTP status it maps to, and the short `reason` sent in the `x-meshlet-error`
 * header so an app can tell the proxy's failures from its own upstream's.
 */

export interface ErrorSpec {
  /** Stable machine code, MESH_ERR_*; never reused for another meaning. */
  readonly code: string;
  /** HTTP status when the error becomes a response. */
  readonly status: number;
  /** Short token for the `x-meshlet-error` response header. */
  readonly reason: string;
}

export class MeshletError extends Error {
  readonly code: string;
  readonly status: number;
  readonly reason: string;
  /** Extra headers for the error response (e.g. `retry-after` on 429). */
  headers: Record<string, string> | undefined;

  constructor(spec: ErrorSpec, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MeshletError';
    this.code = spec.code;
    this.status = spec.status;
    this.reason = spec.reason;
  }
}

function spec(code: string, status: number, reason: string): ErrorSpec {
  return { code, status, reason };
}

/** The registry of error kinds. Add new ones at the end; a test checks codes are unique and documented. */
export const ErrorCodes = {
  CONFIG_INVALID: spec('MESH_ERR_CONFIG_INVALID', 500, 'config_invalid'),
  NO_HEALTHY_ENDPOINT: spec('MESH_ERR_NO_HEALTHY_ENDPOINT', 503, 'no_endpoint'),
  UPSTREAM_CONNECT: spec('MESH_ERR_UPSTREAM_CONNECT', 502, 'upstream_connect'),
  UPSTREAM_RESET: spec('MESH_ERR_UPSTREAM_RESET', 502, 'upstream_reset'),
  UPSTREAM_TIMEOUT: spec('MESH_ERR_UPSTREAM_TIMEOUT', 504, 'upstream_timeout'),
  BAD_REQUEST: spec('MESH_ERR_BAD_REQUEST', 400, 'bad_request'),
  HEADERS_TOO_LARGE: spec('MESH_ERR_HEADERS_TOO_LARGE', 431, 'headers_too_large'),
  CIRCUIT_OPEN: spec('MESH_ERR_CIRCUIT_OPEN', 503, 'circuit_open'),
  OVERFLOW: spec('MESH_ERR_OVERFLOW', 503, 'overflow'),
  RATE_LIMITED: spec('MESH_ERR_RATE_LIMITED', 429, 'rate_limited'),
  UNAUTHORIZED: spec('MESH_ERR_UNAUTHORIZED', 403, 'unauthorized'),
  TLS_PEER_IDENTITY: spec('MESH_ERR_TLS_PEER_IDENTITY', 502, 'peer_identity'),
  DISCOVERY_UNAVAILABLE: spec('MESH_ERR_DISCOVERY_UNAVAILABLE', 503, 'discovery_unavailable'),
  SHUTTING_DOWN: spec('MESH_ERR_SHUTTING_DOWN', 503, 'shutting_down'),
  CA_BAD_TOKEN: spec('MESH_ERR_CA_BAD_TOKEN', 401, 'bad_token'),
  CA_BAD_CSR: spec('MESH_ERR_CA_BAD_CSR', 400, 'bad_csr'),
  CA_FORBIDDEN_IDENTITY: spec('MESH_ERR_CA_FORBIDDEN_IDENTITY', 403, 'forbidden_identity'),
  INTERNAL: spec('MESH_ERR_INTERNAL', 500, 'internal'),
  TLS_NO_CERTIFICATE: spec('MESH_ERR_TLS_NO_CERTIFICATE', 503, 'no_certificate'),
  REQUEST_TIMEOUT: spec('MESH_ERR_REQUEST_TIMEOUT', 408, 'request_timeout'),
  FAULT_INJECTED: spec('MESH_ERR_FAULT_INJECTED', 503, 'fault_injected'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorKind = keyof typeof ErrorCodes;

/** Builds a MeshletError of the given kind. */
export function meshError(kind: ErrorKind, message: string, cause?: unknown): MeshletError {
  return new MeshletError(ErrorCodes[kind], message, cause === undefined ? undefined : { cause });
}

/** True when `err` is a MeshletError of `kind`. */
export function isMeshError(err: unknown, kind?: ErrorKind): err is MeshletError {
  if (!(err instanceof MeshletError)) return false;
  return kind === undefined || err.code === ErrorCodes[kind].code;
}
