/**
 * What happens inside one sidecar, as typed events. Features emit (retry layer, breaker, TLS, discovery);
 * telemetry subscribes (metrics, logs). Emitting with no listener costs a map lookup, so the request
 * path can emit freely. One bus per sidecar, so several sidecars in one process (tests) never mix.
 */
import { EventEmitter } from 'node:events';

export interface MeshEventMap {
  /** A request is being retried; `attempt` is the number of the attempt about to be made (2 = first retry). */
  retry: [{ upstream: string; attempt: number; reason: string }];
  /** A retry was skipped because the retry budget is spent. */
  retryBudgetExhausted: [{ upstream: string }];
  /** A request was refused by a circuit breaker or concurrency limit. */
  breakerRejected: [{ upstream: string; reason: 'circuit_open' | 'overflow' }];
  /** Outlier detection ejected (or returned) an endpoint. */
  outlier: [{ upstream: string; endpoint: string; ejected: boolean; durationMs?: number }];
  /** Active health checking changed an endpoint's health. */
  endpointHealth: [{ upstream: string; endpoint: string; healthy: boolean }];
  /** A rate limit refused a request or connection. */
  rateLimited: [{ scope: string; key: string }];
  /** A TLS handshake failed on a listener or towards a peer. */
  tlsHandshakeError: [{ side: 'inbound' | 'outbound'; peer: string; error: string }];
  /** A certificate was (re)loaded: the mesh leaf (identity: its SPIFFE ID) or the edge's (identity: edge:<first name>). */
  certificate: [{ identity: string; notAfter: Date }];
  /** An edge ACME certificate order succeeded (valid) or failed (failing: `error`, next try in `retryInMs`). */
  acme: [{ domains: readonly string[]; state: 'valid' | 'failing'; notAfter?: Date; error?: string; retryInMs?: number }];
  /** Authorization policy refused a caller. */
  authorizationDenied: [{ source: string; destination: string; protocol: 'http' | 'tcp' }];
  /** A discovery provider's state changed (ok, degraded, starting). */
  discoveryState: [{ provider: string; state: string; error?: string }];
  /** Dynamic configuration (catalog, config file) was reloaded or rejected. */
  configReload: [{ source: string; ok: boolean; error?: string }];
}

/** The per-sidecar event bus. */
export class MeshEvents extends EventEmitter<MeshEventMap> {}
