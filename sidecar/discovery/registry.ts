import type { CatalogSnapshot, Endpoint, ProviderStatus, DiscoveryProvider } from './types.ts';
import type { Logger } from '../telemetry/logger.ts';

type ServiceListener = (endpoints: readonly Endpoint[]) => void;

function sameEndpoints(a: readonly Endpoint[] | undefined, b: readonly Endpoint[]): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.key !== y.key || x.weight !== y.weight || x.tags.join(',') !== y.tags.join(',') || JSON.stringify(x.meta) !== JSON.stringify(y.meta)) return false;
  }
  return true;
}

/**
 * Merges the snapshots of every provider into one view per service and tells each service's
 * subscribers when its endpoint set really changed. Nothing here runs on the request path.
 */
export class EndpointRegistry {
  readonly #byProvider = new Map<string, ReadonlyMap<string, readonly Endpoint[]>>();
  readonly #merged = new Map<string, readonly Endpoint[]>();
  readonly #listeners = new Map<string, Set<ServiceListener>>();
  readonly #providers: DiscoveryProvider[] = [];
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  /** Starts a provider and feeds its snapshots into the registry. */
  async addProvider(provider: DiscoveryProvider): Promise<void> {
    this.#providers.push(provider);
    await provider.start((snapshot) => this.apply(snapshot));
  }

  /** Replaces one provider's snapshot and notifies the services whose merged endpoints changed. */
  apply(snapshot: CatalogSnapshot): void {
    this.#byProvider.set(snapshot.provider, snapshot.services);
    const names = new Set<string>(this.#merged.keys());
    for (const services of this.#byProvider.values()) for (const name of services.keys()) names.add(name);
    for (const name of names) {
      const merged = this.#mergeService(name);
      if (sameEndpoints(this.#merged.get(name), merged)) continue;
      // Kept even when empty: "known, no endpoints" (503 no_endpoint) differs from "never heard of".
      this.#merged.set(name, merged);
      this.#log.info({ service: name, provider: snapshot.provider, endpoints: merged.map((e) => e.key) }, 'endpoints changed');
      for (const listener of this.#listeners.get(name) ?? []) listener(merged);
    }
  }

  #mergeService(name: string): Endpoint[] {
    const byKey = new Map<string, Endpoint>();
    for (const services of this.#byProvider.values()) for (const ep of services.get(name) ?? []) if (!byKey.has(ep.key)) byKey.set(ep.key, ep);
    return [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Current endpoints of a service (empty when unknown). */
  endpoints(service: string): readonly Endpoint[] {
    return this.#merged.get(service) ?? [];
  }

  /**
   * Calls `listener` with the service's endpoints on every change, and at once if a provider already
   * reported the service. Until then the listener stays silent: the service is not known yet.
   */
  subscribe(service: string, listener: ServiceListener): () => void {
    let set = this.#listeners.get(service);
    if (!set) this.#listeners.set(service, (set = new Set()));
    set.add(listener);
    const known = this.#merged.get(service);
    if (known) listener(known);
    return () => set.delete(listener);
  }

  /** Each provider's state, for the admin API. */
  providerStatus(): ProviderStatus[] {
    return this.#providers.map((p) => p.status());
  }

  /** Stops every provider. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.#providers.map((p) => p.stop()));
  }
}
