/**
 * Registers this sidecar's instance with the local Consul agent, keeps a TTL check passing when asked
 * to, and deregisters on shutdown. Never blocks the sidecar: while the agent is unreachable it retries
 * with backoff, and it registers again if the agent forgot the instance (agent restarted).
 */
import { hostname } from 'node:os';
import type { Logger } from '../telemetry/logger.ts';
import { ExponentialBackoff } from './consul-backoff.ts';
import { consulStatusCode, describeConsulError, goDuration, type ConsulClient, type ServiceRegistration } from './consul-client.ts';
import type { ConsulConfig } from './consul-config.ts';
import { META_INBOUND_PORT, META_SPIFFE_ID, META_VERSION } from './consul-endpoints.ts';

export const DEFAULT_TRUST_DOMAIN = 'meshlet.local';

/** What the registration describes: the local service and where this sidecar listens. */
export interface RegistrationTarget {
  readonly service: { readonly name: string; readonly namespace: string; readonly tags: readonly string[] };
  readonly inboundAddress: string;
  readonly adminAddress: string;
  readonly ports: { readonly inbound: number; readonly admin: number };
  readonly trustDomain?: string;
  readonly hostname?: string;
  readonly version: string;
}

/** The SPIFFE ID of a service: spiffe://<trust domain>/ns/<namespace>/svc/<name>. */
export function spiffeId(trustDomain: string, namespace: string, name: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/svc/${name}`;
}

function isUnspecified(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || address === '[::]';
}

function hostForUrl(address: string): string {
  if (isUnspecified(address)) return '127.0.0.1';
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}

/** The registration Consul receives for this instance (see docs/consul.md for each field). */
export function buildRegistration(conf: ConsulConfig, target: RegistrationTarget): ServiceRegistration {
  const { registration } = conf;
  const { service, ports } = target;
  const host = (target.hostname ?? hostname()).replace(/[^A-Za-z0-9_.-]/g, '-');
  const id = registration.id ?? `${service.name}-${host}-${ports.inbound}`;
  const address = registration.address ?? (isUnspecified(target.inboundAddress) ? undefined : target.inboundAddress);
  const check = registration.check;
  const common = {
    checkid: `service:${id}`,
    name: 'Meshlet sidecar ready',
    ...(check.deregisterCriticalAfter > 0 ? { deregistercriticalserviceafter: goDuration(check.deregisterCriticalAfter) } : {}),
  };
  return {
    name: service.name,
    id,
    ...(address ? { address } : {}),
    port: ports.inbound,
    tags: [...service.tags],
    meta: {
      [META_SPIFFE_ID]: spiffeId(target.trustDomain ?? DEFAULT_TRUST_DOMAIN, service.namespace, service.name),
      [META_INBOUND_PORT]: String(ports.inbound),
      [META_VERSION]: target.version,
    },
    check:
      check.kind === 'ttl'
        ? { ...common, ttl: goDuration(check.ttl), notes: 'Meshlet reports passing while it serves' }
        : {
            ...common,
            http: check.url ?? `http://${hostForUrl(target.adminAddress)}:${ports.admin}/ready`,
            method: 'GET',
            interval: goDuration(check.interval),
            timeout: goDuration(check.timeout),
          },
  };
}

export type RegistrationState = 'idle' | 'registering' | 'registered' | 'failing' | 'deregistered';

export interface ConsulRegistrationOptions {
  readonly conf: ConsulConfig;
  readonly client: ConsulClient;
  readonly registration: ServiceRegistration;
  readonly log: Logger;
  readonly random?: () => number;
}

export class ConsulRegistration {
  readonly registration: ServiceRegistration;
  readonly #options: ConsulRegistrationOptions;
  readonly #log: Logger;
  readonly #backoff: ExponentialBackoff;
  #state: RegistrationState = 'idle';
  #lastError: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The call in flight, so stop() never races a register that lands after the deregister. */
  #inFlight: Promise<void> = Promise.resolve();
  #stopped = false;
  #attempted = false;

  constructor(options: ConsulRegistrationOptions) {
    this.#options = options;
    this.registration = options.registration;
    this.#log = options.log.child({ consulServiceId: options.registration.id });
    this.#backoff = new ExponentialBackoff(options.conf.backoff.min, options.conf.backoff.max, options.random);
  }

  get checkId(): string {
    return this.registration.check.checkid;
  }

  /** Registers in the background (retrying until it works); returns at once. */
  start(): void {
    this.#schedule(0, () => this.#register());
  }

  status(): { state: RegistrationState; id: string; lastError?: string } {
    return { state: this.#state, id: this.registration.id, ...(this.#lastError ? { lastError: this.#lastError } : {}) };
  }

  #schedule(delayMs: number, step: () => Promise<void>): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#inFlight = step();
    }, delayMs);
  }

  async #register(): Promise<void> {
    this.#attempted = true;
    if (this.#state !== 'failing') this.#state = 'registering';
    try {
      await this.#options.client.register(this.registration);
    } catch (err) {
      this.#fail('consul registration failed; retrying', err, () => this.#register());
      return;
    }
    this.#backoff.reset();
    this.#state = 'registered';
    this.#lastError = undefined;
    const r = this.registration;
    this.#log.info({ service: r.name, id: r.id, port: r.port, check: r.check.ttl ? 'ttl' : 'http' }, 'registered in consul');
    if (r.check.ttl) await this.#heartbeat();
  }

  /** TTL mode: reports passing now and every ttl/3, so one lost update never lets the check expire. */
  async #heartbeat(): Promise<void> {
    if (this.#stopped) return;
    const every = Math.max(1, Math.floor(this.#options.conf.registration.check.ttl / 3));
    try {
      await this.#options.client.passCheck(this.checkId, 'meshlet serving');
    } catch (err) {
      if (consulStatusCode(err) === 404) {
        // The agent no longer knows the check: it restarted or reaped us. Register again.
        this.#log.warn({ error: describeConsulError(err) }, 'consul lost this registration; registering again');
        this.#state = 'registering';
        this.#schedule(0, () => this.#register());
        return;
      }
      this.#fail('consul check update failed; retrying', err, () => this.#heartbeat(), every);
      return;
    }
    if (this.#state === 'failing') this.#log.info('consul check updates work again');
    this.#state = 'registered';
    this.#lastError = undefined;
    this.#backoff.reset();
    this.#schedule(every, () => this.#heartbeat());
  }

  /** Logs once per change into failing, then retries `step` after a backoff (or `fixedMs`). */
  #fail(message: string, err: unknown, step: () => Promise<void>, fixedMs?: number): void {
    const error = describeConsulError(err);
    const delay = fixedMs ?? this.#backoff.next();
    if (this.#state !== 'failing') this.#log.warn({ error, retryInMs: delay }, message);
    this.#state = 'failing';
    this.#lastError = error;
    this.#schedule(delay, step);
  }

  /** Stops heartbeats and removes the instance from Consul (before the sidecar drains). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#inFlight;
    clearTimeout(this.#timer);
    if (!this.#attempted) return;
    try {
      await this.#options.client.deregister(this.registration.id);
      this.#log.info({ id: this.registration.id }, 'deregistered from consul');
    } catch (err) {
      if (consulStatusCode(err) !== 404) {
        this.#log.warn({ error: describeConsulError(err) }, 'consul deregistration failed');
        this.#state = 'failing';
        this.#lastError = describeConsulError(err);
        return;
      }
    }
    this.#state = 'deregistered';
  }
}
