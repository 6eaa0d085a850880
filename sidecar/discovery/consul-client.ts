/**
 * The few Consul calls Meshlet makes, typed, over the `consul` npm client. The client's shipped types
 * omit options its code supports (`baseUrl`, `headers`, `timeout`, `ctx`), so they are declared here once.
 */
import process from 'node:process';
import { EventEmitter } from 'node:events';
import Consul from 'consul';
import type { ConsulConfig } from './consul-config.ts';
import { resolveConsulEndpoint } from './consul-config.ts';

/** One entry of GET /v1/health/service/:name (the fields Meshlet reads). */
export interface ConsulServiceEntry {
  readonly Node?: { readonly Node?: string; readonly Address?: string; readonly Datacenter?: string } | null;
  readonly Service?: {
    readonly ID?: string;
    readonly Service?: string;
    readonly Address?: string;
    readonly Port?: number;
    readonly Tags?: readonly string[] | null;
    readonly Meta?: Readonly<Record<string, unknown>> | null;
    readonly Weights?: { readonly Passing?: number; readonly Warning?: number } | null;
  } | null;
}

/** What one health query returned, with its blocking-query metadata. */
export interface HealthQueryResult {
  /** X-Consul-Index; undefined when missing or not a number. */
  readonly index: bigint | undefined;
  readonly entries: readonly ConsulServiceEntry[];
  readonly knownLeader: boolean | undefined;
  readonly lastContactMs: number | undefined;
}

/** The registration body as the npm client takes it (it maps these keys to Consul's). */
export interface ServiceRegistration {
  readonly name: string;
  readonly id: string;
  readonly address?: string;
  readonly port: number;
  readonly tags: readonly string[];
  readonly meta: Readonly<Record<string, string>>;
  readonly check: {
    readonly checkid: string;
    readonly name: string;
    readonly notes?: string;
    readonly http?: string;
    readonly method?: string;
    readonly interval?: string;
    readonly timeout?: string;
    readonly ttl?: string;
    readonly deregistercriticalserviceafter?: string;
  };
}

interface RawResponse {
  readonly statusCode?: number;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** The untyped surface of the npm client that Meshlet uses. */
interface RawConsul {
  health: { service(opts: Record<string, unknown>): Promise<unknown> };
  agent: {
    service: { register(opts: Record<string, unknown>): Promise<unknown>; deregister(opts: Record<string, unknown>): Promise<unknown> };
    check: { pass(opts: Record<string, unknown>): Promise<unknown> };
  };
  destroy(): void;
}

/** Formats milliseconds as a Go duration, which is what Consul parses. */
export function goDuration(ms: number): string {
  return `${Math.round(ms)}ms`;
}

/** HTTP status of a failed call, when Consul answered at all. */
export function consulStatusCode(err: unknown): number | undefined {
  const res = (err as { response?: RawResponse } | null)?.response;
  return typeof res?.statusCode === 'number' ? res.statusCode : undefined;
}

const MAX_REASON_CHARS = 200;

/**
 * A short, log-friendly description of a failed call. The client keeps Consul's plain-text reason
 * only when it is under 80 characters; longer ones (e.g. the namespace refusal) are taken from the body.
 */
export function describeConsulError(err: unknown): string {
  const status = consulStatusCode(err);
  let message = err instanceof Error ? err.message : String(err);
  const body = (err as { response?: { body?: unknown } } | null)?.response?.body;
  if (typeof body === 'string' && body.trim() !== '' && !message.includes(body.trim())) {
    const reason = body.trim();
    message = reason.length > MAX_REASON_CHARS ? `${reason.slice(0, MAX_REASON_CHARS)}...` : reason;
  }
  return status === undefined ? message : `${message} (HTTP ${status})`;
}

export interface ConsulClientOptions {
  readonly conf: ConsulConfig;
  readonly env?: NodeJS.ProcessEnv;
}

/** A Consul agent client bound to one config (address, token, datacenter, namespace). */
export class ConsulClient {
  readonly baseUrl: string;
  readonly #raw: RawConsul;
  readonly #token: string | undefined;
  readonly #conf: ConsulConfig;

  constructor({ conf, env = process.env }: ConsulClientOptions) {
    const endpoint = resolveConsulEndpoint(conf, env);
    this.baseUrl = endpoint.baseUrl;
    this.#token = endpoint.token;
    this.#conf = conf;
    // CE rejects a namespace header outright, so it is only sent when one is configured.
    const headers = conf.namespace ? { 'x-consul-namespace': conf.namespace } : {};
    const Client = Consul as unknown as new (opts: Record<string, unknown>) => RawConsul;
    this.#raw = new Client({ baseUrl: endpoint.baseUrl, headers, timeout: conf.timeout });
  }

  #common(): Record<string, unknown> {
    return { ...(this.#token ? { token: this.#token } : {}), ...(this.#conf.datacenter ? { dc: this.#conf.datacenter } : {}) };
  }

  /**
   * GET /v1/health/service/:service?passing=true (plus tag, dc), blocking when `index` > 0.
   * Aborting `signal` cancels the request in flight.
   */
  async healthService(service: string, index: bigint, waitMs: number, signal: AbortSignal): Promise<HealthQueryResult> {
    const ctx = withResponse();
    const onAbort = () => ctx.emit('cancel');
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      const opts: Record<string, unknown> = {
        ...this.#common(),
        service,
        passing: true,
        ctx,
        // Consul may hold a query up to wait + wait/16; give it that and a margin before calling it dead.
        timeout: Math.ceil(waitMs + waitMs / 16 + Math.max(1000, waitMs / 10)),
      };
      if (this.#conf.tags.length > 0) opts.tag = [...this.#conf.tags];
      if (index > 0n) {
        opts.index = index.toString();
        opts.wait = goDuration(waitMs);
      }
      const [res, body] = (await this.#raw.health.service(opts)) as [RawResponse, unknown];
      return {
        index: parseIndex(res.headers['x-consul-index']),
        entries: Array.isArray(body) ? (body as ConsulServiceEntry[]) : [],
        knownLeader: header(res, 'x-consul-knownleader') === undefined ? undefined : header(res, 'x-consul-knownleader') === 'true',
        lastContactMs: numberHeader(res, 'x-consul-lastcontact'),
      };
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** PUT /v1/agent/service/register. */
  async register(registration: ServiceRegistration): Promise<void> {
    const body = { ...registration, tags: [...registration.tags], meta: { ...registration.meta }, check: { ...registration.check } };
    await this.#raw.agent.service.register({ ...this.#tokenOnly(), ...body, ctx: withResponse() });
  }

  /** PUT /v1/agent/service/deregister/:id. */
  async deregister(id: string): Promise<void> {
    await this.#raw.agent.service.deregister({ ...this.#tokenOnly(), id, ctx: withResponse() });
  }

  /** PUT /v1/agent/check/pass/:id (a TTL check heartbeat). */
  async passCheck(checkId: string, note: string): Promise<void> {
    await this.#raw.agent.check.pass({ ...this.#tokenOnly(), id: checkId, note, ctx: withResponse() });
  }

  // Agent endpoints act on the local agent: a datacenter does not apply to them.
  #tokenOnly(): Record<string, unknown> {
    return this.#token ? { token: this.#token } : {};
  }

  /** Closes pooled keep-alive connections. */
  destroy(): void {
    this.#raw.destroy();
  }
}

/** A papi request context that makes failed calls carry their HTTP response (for the status code). */
function withResponse(): EventEmitter {
  return Object.assign(new EventEmitter(), { includeResponse: true });
}

function header(res: RawResponse, name: string): string | undefined {
  const value = res.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function numberHeader(res: RawResponse, name: string): number | undefined {
  const value = header(res, name);
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

/** Parses X-Consul-Index (a decimal uint64). */
export function parseIndex(value: string | string[] | undefined): bigint | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || !/^\d{1,20}$/.test(text.trim())) return undefined;
  return BigInt(text.trim());
}
