import type { Endpoint } from '../discovery/types.ts';

/**
 * The live state of one endpoint inside a cluster: discovery data plus what the data path learns
 * (in-flight requests, health, ejection). Balancers and resilience layers read and update it.
 */
export class EndpointState {
  endpoint: Endpoint;
  /** Requests currently in flight to this endpoint. */
  active = 0;
  /** False while active health checks say the endpoint is down. */
  healthy = true;
  /** Epoch ms until which outlier detection keeps this endpoint out; 0 when not ejected. */
  ejectedUntil = 0;
  /** Scratch space for balancers that keep per-endpoint state (e.g. smooth round robin weight). */
  balancerWeight = 0;
  /** Latency EWMA in ms for latency-aware balancers; 0 until the first sample. */
  latencyEwmaMs = 0;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }

  get key(): string {
    return this.endpoint.key;
  }

  get weight(): number {
    return this.endpoint.weight;
  }

  /** Whether the endpoint may receive traffic at `now`. */
  isAvailable(now: number): boolean {
    return this.healthy && this.ejectedUntil <= now;
  }
}
