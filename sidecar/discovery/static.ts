import type { MeshletConfig } from '../config/schema.ts';
import { makeEndpoint, type CatalogSnapshot, type DiscoveryProvider, type Endpoint, type ProviderStatus } from './types.ts';

/** Endpoints written in the main config (`upstreams[].endpoints`), emitted once. */
export class StaticProvider implements DiscoveryProvider {
  readonly name = 'static';
  readonly #services: Map<string, Endpoint[]>;

  constructor(config: Pick<MeshletConfig, 'upstreams'>) {
    this.#services = new Map();
    for (const upstream of config.upstreams) {
      if (upstream.endpoints.length === 0) continue;
      const service = upstream.service ?? upstream.name;
      const list = this.#services.get(service) ?? [];
      for (const ep of upstream.endpoints) list.push(makeEndpoint(ep));
      this.#services.set(service, list);
    }
  }

  async start(emit: (snapshot: CatalogSnapshot) => void): Promise<void> {
    emit({ provider: this.name, services: this.#services });
  }

  status(): ProviderStatus {
    return { provider: this.name, state: 'ok' };
  }

  async stop(): Promise<void> {}
}
