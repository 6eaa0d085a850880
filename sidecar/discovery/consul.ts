/**
 * Consul wired into a sidecar: the discovery provider for its upstreams and, when enabled, the
 * registration of its own instance (after listeners are bound, since ports may be OS-chosen) with
 * deregistration as the first step of shutdown.
 */
import process from 'node:process';
import { readFileSync } from 'node:fs';
import type { MeshletConfig } from '../config/schema.ts';
import { meshError } from '../errors.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { ConsulClient } from './consul-client.ts';
import type { ConsulConfig } from './consul-config.ts';
import { ConsulProvider } from './consul-provider.ts';
import { buildRegistration, ConsulRegistration } from './consul-registration.ts';

/** The parts of a Sidecar this module uses. */
export interface ConsulHost {
  readonly config: Readonly<MeshletConfig>;
  readonly log: Logger;
  readonly events: MeshEvents;
  readonly beforeDrain: Array<() => Promise<void>>;
}

const MESHLET_VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export class ConsulIntegration {
  readonly client: ConsulClient;
  readonly provider: ConsulProvider;
  readonly #host: ConsulHost;
  readonly #conf: ConsulConfig;
  #registration: ConsulRegistration | undefined;

  constructor(host: ConsulHost, conf: ConsulConfig, env: NodeJS.ProcessEnv = process.env) {
    this.#host = host;
    this.#conf = conf;
    try {
      this.client = new ConsulClient({ conf, env });
    } catch (err) {
      throw meshError('CONFIG_INVALID', `discovery.consul: ${(err as Error).message}`, err);
    }
    const services = host.config.upstreams.map((u) => u.service ?? u.name);
    this.provider = new ConsulProvider({
      conf,
      client: this.client,
      services,
      log: host.log,
      events: host.events,
      registrationStatus: () => this.#registration?.status() ?? { state: conf.registration.enabled ? 'idle' : 'disabled' },
    });
  }

  get registration(): ConsulRegistration | undefined {
    return this.#registration;
  }

  /**
   * Registers the instance (in the background) once the sidecar's ports are known. The SPIFFE ID in
   * its meta uses `security.trustDomain` when configured, else `trustDomain`, else meshlet.local.
   */
  startRegistration(ports: { readonly inbound: number; readonly admin: number }, trustDomain?: string): void {
    if (!this.#conf.registration.enabled || this.#registration) return;
    const { config } = this.#host;
    trustDomain = (config as { security?: { trustDomain?: string } }).security?.trustDomain ?? trustDomain;
    const registration = buildRegistration(this.#conf, {
      service: config.service,
      inboundAddress: config.inbound.address,
      adminAddress: config.admin.address,
      ports,
      ...(trustDomain ? { trustDomain } : {}),
      version: MESHLET_VERSION,
    });
    this.#registration = new ConsulRegistration({ conf: this.#conf, client: this.client, registration, log: this.#host.log.child({ provider: 'consul' }) });
    const reg = this.#registration;
    this.#host.beforeDrain.unshift(() => reg.stop());
    reg.start();
  }
}
