/**
 * Consul discovery: one blocking-query watcher per upstream service, merged into whole snapshots
 * (provider "consul"). While Consul fails, the last known endpoints stay in force; state changes are
 * logged once and published as `discoveryState` events. `start` never waits for Consul.
 */
import type { MeshEvents } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { ExponentialBackoff, TokenBucket } from './consul-backoff.ts';
import { describeConsulError, type ConsulClient, type HealthQueryResult } from './consul-client.ts';
import type { ConsulConfig } from './consul-config.ts';
import { entriesToEndpoints, sameEndpointList } from './consul-endpoints.ts';
import { ServiceWatcher } from './consul-watcher.ts';
import type { CatalogSnapshot, DiscoveryProvider, Endpoint, ProviderStatus } from './types.ts';

type State = ProviderStatus['state'];

/** Per-service view shown on /endpoints. */
export interface ConsulServiceStatus {
  readonly state: State;
  readonly endpoints: number;
  readonly index: string;
  readonly lastError?: string;
  /** Consecutive failed queries (absent once one succeeds). */
  readonly failures?: number;
  readonly lastUpdate?: string;
  readonly knownLeader?: boolean;
  readonly lastContactMs?: number;
}

export interface ConsulProviderStatus extends ProviderStatus {
  readonly address: string;
  readonly services: Readonly<Record<string, ConsulServiceStatus>>;
  readonly registration?: unknown;
}

export interface ConsulProviderOptions {
  readonly conf: ConsulConfig;
  readonly client: ConsulClient;
  /** Service names to watch (the upstreams' services). */
  readonly services: readonly string[];
  readonly log: Logger;
  readonly events?: MeshEvents;
  /** Jitter source, injectable for tests. */
  readonly random?: () => number;
  /** This instance's own registration state, shown with the provider's. */
  readonly registrationStatus?: () => unknown;
}

interface Watched {
  readonly watcher: ServiceWatcher;
  status: ConsulServiceStatus;
  endpoints: readonly Endpoint[] | undefined;
}

export class ConsulProvider implements DiscoveryProvider {
  readonly name = 'consul';
  readonly #options: ConsulProviderOptions;
  readonly #log: Logger;
  readonly #watched = new Map<string, Watched>();
  #emit: ((snapshot: CatalogSnapshot) => void) | undefined;
  #state: State = 'starting';
  #lastError: string | undefined;

  constructor(options: ConsulProviderOptions) {
    this.#options = options;
    this.#log = options.log.child({ provider: 'consul', consul: options.client.baseUrl });
    const { conf, client } = options;
    for (const service of new Set(options.services)) {
      const watcher = new ServiceWatcher({
        service,
        query: (index, signal) => client.healthService(service, index, conf.wait, signal),
        backoff: new ExponentialBackoff(conf.backoff.min, conf.backoff.max, options.random),
        bucket: new TokenBucket(conf.queryBurst, conf.queryInterval),
        onResult: (result) => this.#onResult(service, result),
        onError: (err, retryInMs) => this.#onError(service, err, retryInMs),
      });
      this.#watched.set(service, { watcher, status: { state: 'starting', endpoints: 0, index: '0' }, endpoints: undefined });
    }
  }

  async start(emit: (snapshot: CatalogSnapshot) => void): Promise<void> {
    this.#emit = emit;
    this.#log.info({ services: [...this.#watched.keys()] }, 'watching services in consul');
    if (this.#watched.size === 0) this.#state = 'ok';
    for (const { watcher } of this.#watched.values()) watcher.start();
  }

  #onResult(service: string, result: HealthQueryResult): void {
    const watched = this.#watched.get(service)!;
    const endpoints = entriesToEndpoints(result.entries);
    const changed = !sameEndpointList(watched.endpoints, endpoints);
    if (watched.status.state !== 'ok') this.#log.info({ service, endpoints: endpoints.length }, 'consul watch ok');
    watched.status = {
      state: 'ok',
      endpoints: endpoints.length,
      index: watched.watcher.index.toString(),
      lastUpdate: changed || !watched.status.lastUpdate ? new Date().toISOString() : watched.status.lastUpdate,
      ...(result.knownLeader === undefined ? {} : { knownLeader: result.knownLeader }),
      ...(result.lastContactMs === undefined ? {} : { lastContactMs: result.lastContactMs }),
    };
    if (changed) {
      watched.endpoints = endpoints;
      this.#emitSnapshot();
    }
    this.#updateState();
  }

  #onError(service: string, err: unknown, retryInMs: number): void {
    const watched = this.#watched.get(service)!;
    const message = describeConsulError(err);
    if (watched.status.state === 'ok' || watched.status.lastError === undefined) {
      this.#log.warn({ service, error: message, retryInMs, keeping: watched.endpoints?.length ?? 0 }, 'consul watch failing; keeping last known endpoints');
    }
    watched.status = { ...watched.status, state: 'degraded', lastError: message, failures: (watched.status.failures ?? 0) + 1 };
    this.#updateState();
  }

  #emitSnapshot(): void {
    const services = new Map<string, readonly Endpoint[]>();
    for (const [name, watched] of this.#watched) if (watched.endpoints) services.set(name, watched.endpoints);
    this.#emit?.({ provider: this.name, services });
  }

  /** Recomputes the provider state; logs and publishes it when it changed. */
  #updateState(): void {
    const all = [...this.#watched.values()];
    const failing = all.find((w) => w.status.state === 'degraded');
    const state: State = failing ? 'degraded' : all.every((w) => w.status.state === 'ok') ? 'ok' : 'starting';
    const error = failing?.status.lastError;
    if (state === this.#state) {
      this.#lastError = error;
      return;
    }
    this.#state = state;
    this.#lastError = error;
    if (state === 'degraded') this.#log.warn({ error }, 'consul discovery degraded');
    else this.#log.info({ state }, 'consul discovery state');
    this.#options.events?.emit('discoveryState', { provider: this.name, state, ...(error ? { error } : {}) });
  }

  status(): ConsulProviderStatus {
    const services: Record<string, ConsulServiceStatus> = {};
    for (const [name, watched] of this.#watched) services[name] = watched.status;
    const lastUpdate = [...this.#watched.values()].map((w) => w.status.lastUpdate).filter((u) => u !== undefined).sort().at(-1);
    return {
      provider: this.name,
      state: this.#state,
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
      ...(lastUpdate ? { lastUpdate } : {}),
      address: this.#options.client.baseUrl,
      services,
      ...(this.#options.registrationStatus ? { registration: this.#options.registrationStatus() } : {}),
    };
  }

  /** Stops every watcher, then closes the client's pooled connections (registration is done by then). */
  async stop(): Promise<void> {
    this.#emit = undefined;
    await Promise.all([...this.#watched.values()].map(({ watcher }) => watcher.stop()));
    this.#options.client.destroy();
  }
}
