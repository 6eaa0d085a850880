/** Config of the per-upstream circuit breaker (Envoy-style concurrency limits). */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_BREAKER_MAX_CONNECTIONS = 1024;
export const DEFAULT_BREAKER_MAX_PENDING = 1024;
export const DEFAULT_BREAKER_MAX_REQUESTS = 1024;
export const DEFAULT_BREAKER_MAX_RETRIES = 3;
export const DEFAULT_BREAKER_PENDING_TIMEOUT_MS = 5000;

export const circuitBreakerSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Enforce the limits below (default true)'),
    maxConnections: z.int().min(1).default(DEFAULT_BREAKER_MAX_CONNECTIONS).describe(`Attempts on the wire at once to the upstream (each holds one HTTP/1 connection); more wait as pending (default ${DEFAULT_BREAKER_MAX_CONNECTIONS})`),
    maxPending: z.int().min(0).default(DEFAULT_BREAKER_MAX_PENDING).describe(`Attempts waiting for a connection slot; beyond this: 503 overflow (default ${DEFAULT_BREAKER_MAX_PENDING})`),
    maxRequests: z.int().min(1).default(DEFAULT_BREAKER_MAX_REQUESTS).describe(`Requests in flight to the upstream, pending included; beyond this: 503 circuit_open (default ${DEFAULT_BREAKER_MAX_REQUESTS})`),
    maxRetries: z.int().min(0).default(DEFAULT_BREAKER_MAX_RETRIES).describe(`Retries in flight at once; beyond this a retry is skipped (default ${DEFAULT_BREAKER_MAX_RETRIES})`),
    pendingTimeout: duration(DEFAULT_BREAKER_PENDING_TIMEOUT_MS, 'Longest wait for a connection slot before 503 overflow'),
  })
  .prefault({})
  .describe('Circuit breaking: concurrency limits per upstream; over a limit the request fails fast with 503');

export type CircuitBreakerConfig = z.infer<typeof circuitBreakerSchema>;
