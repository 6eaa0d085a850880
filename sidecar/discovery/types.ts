/** What discovery providers produce and how the sidecar consumes it. */

/** One reachable instance of a service. `key` is `address:port`, unique within a service. */
export interface Endpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly tags: readonly string[];
  /** Free-form metadata (e.g. Consul service meta); `identity` may name the peer's SPIFFE ID. */
  readonly meta: Readonly<Record<string, string>>;
}

/**
 * A whole snapshot of one provider's view: service name -> endpoints. Providers always emit complete
 * snapshots, never deltas, so a consumer can drop unchanged ones and swap atomically.
 */
export interface CatalogSnapshot {
  readonly provider: string;
  readonly services: ReadonlyMap<string, readonly Endpoint[]>;
}

/** The state a provider reports for the admin API and metrics. */
export interface ProviderStatus {
  readonly provider: string;
  /** `ok`: last fetch worked; `degraded`: serving last known data after an error; `starting`: no data yet. */
  readonly state: 'starting' | 'ok' | 'degraded';
  readonly lastError?: string;
  readonly lastUpdate?: string;
}

/** A source of endpoints. `start` begins watching and calls `emit` with each new snapshot. */
export interface DiscoveryProvider {
  readonly name: string;
  start(emit: (snapshot: CatalogSnapshot) => void): Promise<void>;
  status(): ProviderStatus;
  stop(): Promise<void>;
}

/** Builds an endpoint with its key filled in. */
export function makeEndpoint(init: { address: string; port: number; weight?: number; tags?: readonly string[]; meta?: Record<string, string> }): Endpoint {
  return {
    key: `${init.address}:${init.port}`,
    address: init.address,
    port: init.port,
    weight: init.weight ?? 1,
    tags: init.tags ?? [],
    meta: init.meta ?? {},
  };
}
