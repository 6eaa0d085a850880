/** Turning Consul health entries into Meshlet endpoints, and the service meta keys Meshlet writes. */
import type { ConsulServiceEntry } from './consul-client.ts';
import { makeEndpoint, type Endpoint } from './types.ts';

/** Service meta keys Meshlet registers (Consul meta keys allow letters, digits, `-` and `_`). */
export const META_SPIFFE_ID = 'spiffe-id';
export const META_INBOUND_PORT = 'meshlet-inbound-port';
export const META_VERSION = 'meshlet-version';

const MAX_WEIGHT = 1000;

/**
 * Maps entries of /v1/health/service to endpoints. The address is the service address, or the node
 * address when the service has none (as Consul documents). Entries without a port are skipped.
 * `meta` keeps the service meta and adds `identity` (the peer's SPIFFE ID, when it registered one)
 * and the Consul node and instance ID.
 */
export function entriesToEndpoints(entries: readonly ConsulServiceEntry[]): Endpoint[] {
  const endpoints: Endpoint[] = [];
  for (const entry of entries) {
    const service = entry.Service;
    if (!service) continue;
    const address = service.Address || entry.Node?.Address;
    const port = service.Port;
    if (!address || typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) continue;
    const meta: Record<string, string> = {};
    for (const [k, v] of Object.entries(service.Meta ?? {})) if (typeof v === 'string') meta[k] = v;
    if (meta[META_SPIFFE_ID]) meta.identity = meta[META_SPIFFE_ID];
    if (entry.Node?.Node) meta['consul-node'] = entry.Node.Node;
    if (service.ID) meta['consul-service-id'] = service.ID;
    const passing = service.Weights?.Passing;
    const weight = typeof passing === 'number' && Number.isFinite(passing) ? Math.min(MAX_WEIGHT, Math.max(1, Math.round(passing))) : 1;
    endpoints.push(makeEndpoint({ address, port, weight, tags: (service.Tags ?? []).filter((t) => typeof t === 'string'), meta }));
  }
  return endpoints.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/** True when two endpoint lists (sorted by key) carry the same data. */
export function sameEndpointList(a: readonly Endpoint[] | undefined, b: readonly Endpoint[]): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}
