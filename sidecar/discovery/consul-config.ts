/**
 * `discovery.consul`: how the sidecar finds its upstreams in Consul and registers itself there.
 * Address and token fall back to Consul's own environment variables (`CONSUL_HTTP_ADDR`,
 * `CONSUL_HTTP_TOKEN`), resolved when the client is built so `meshlet validate` shows what was written.
 */
import process from 'node:process';
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_CONSUL_ADDRESS = '127.0.0.1:8500';
export const DEFAULT_CONSUL_WAIT_MS = 30_000;
export const DEFAULT_CONSUL_TIMEOUT_MS = 5000;
export const DEFAULT_CONSUL_BACKOFF_MIN_MS = 200;
export const DEFAULT_CONSUL_BACKOFF_MAX_MS = 30_000;
export const DEFAULT_CONSUL_QUERY_BURST = 5;
export const DEFAULT_CONSUL_QUERY_INTERVAL_MS = 200;
export const DEFAULT_CHECK_INTERVAL_MS = 10_000;
export const DEFAULT_CHECK_TIMEOUT_MS = 5000;
export const DEFAULT_CHECK_TTL_MS = 15_000;
export const DEFAULT_DEREGISTER_CRITICAL_AFTER_MS = 0;
/** Consul never reaps a critical service sooner than this (it raises smaller values to it). */
export const CONSUL_MIN_DEREGISTER_AFTER_MS = 60_000;
export const CHECK_KINDS = ['http', 'ttl'] as const;

const checkSchema = z
  .strictObject({
    kind: z.enum(CHECK_KINDS).default('http').describe("http: Consul polls the sidecar's admin /ready; ttl: the sidecar reports passing itself (default http)"),
    url: z.url().optional().describe('URL Consul polls for an http check (default http://<admin address>:<admin port>/ready)'),
    interval: duration(DEFAULT_CHECK_INTERVAL_MS, 'How often Consul runs the http check'),
    timeout: duration(DEFAULT_CHECK_TIMEOUT_MS, 'Time Consul allows the http check to answer'),
    ttl: duration(DEFAULT_CHECK_TTL_MS, 'ttl check: critical unless the sidecar reports within this; it reports every ttl/3'),
    deregisterCriticalAfter: duration(DEFAULT_DEREGISTER_CRITICAL_AFTER_MS, 'Consul removes the instance after its check was critical this long; 0 never, else at least 1m').refine(
      (ms) => ms === 0 || ms >= CONSUL_MIN_DEREGISTER_AFTER_MS,
      { error: 'expected 0 (never) or at least 1m (Consul minimum)' },
    ),
  })
  .prefault({})
  .describe('Health check registered with the instance');

const registrationSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Register this instance with the local Consul agent and deregister on shutdown (default true)'),
    id: z
      .string()
      .min(1)
      .optional()
      .describe('Service instance ID, unique on the agent (default <service>-<hostname>-<inbound port>)'),
    address: z
      .string()
      .min(1)
      .optional()
      .describe('Address peers use to reach the inbound listener (default inbound.address, or the agent address when that is 0.0.0.0/::)'),
    check: checkSchema,
  })
  .prefault({})
  .describe('Registration of this sidecar in Consul');

export const consulSchema = z
  .strictObject({
    address: z
      .string()
      .min(1)
      .superRefine((raw, ctx) => {
        try {
          parseAgentAddress(raw, 'address');
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: (err as Error).message.replace(/^address: /, '') });
        }
      })
      .optional()
      .describe('Consul agent HTTP API, host:port or http(s)://host:port (default $CONSUL_HTTP_ADDR, else 127.0.0.1:8500)'),
    token: z.string().min(1).optional().describe('ACL token (default $CONSUL_HTTP_TOKEN); redacted on /config'),
    datacenter: z.string().min(1).optional().describe('Datacenter to query (default: the agent datacenter)'),
    namespace: z.string().min(1).optional().describe('Consul Enterprise namespace for queries and registration'),
    tags: z.array(z.string().min(1)).default([]).describe('Only instances carrying all of these tags receive traffic'),
    wait: duration(DEFAULT_CONSUL_WAIT_MS, 'Longest a blocking query waits for a change before Consul answers anyway'),
    timeout: duration(DEFAULT_CONSUL_TIMEOUT_MS, 'Time allowed for non-blocking calls (register, deregister, check updates)'),
    queryBurst: z.int().min(1).max(100).default(DEFAULT_CONSUL_QUERY_BURST).describe(`Blocking queries per service allowed back to back before rate limiting (default ${DEFAULT_CONSUL_QUERY_BURST})`),
    queryInterval: duration(DEFAULT_CONSUL_QUERY_INTERVAL_MS, 'Average time between queries per service once the burst is spent'),
    backoff: z
      .strictObject({
        min: duration(DEFAULT_CONSUL_BACKOFF_MIN_MS, 'First retry delay after Consul fails; doubles per failure, with jitter'),
        max: duration(DEFAULT_CONSUL_BACKOFF_MAX_MS, 'Largest retry delay while Consul keeps failing'),
      })
      .prefault({})
      .refine((b) => b.max >= b.min, { error: 'backoff.max must be at least backoff.min' })
      .describe('Retry pacing while Consul is unreachable or failing'),
    registration: registrationSchema,
  })
  .describe('Consul discovery (blocking queries on /v1/health/service) and self-registration');

export type ConsulConfig = z.infer<typeof consulSchema>;
export type ConsulCheckConfig = ConsulConfig['registration']['check'];

/** Where and how to reach Consul, after environment fallbacks. */
export interface ConsulEndpoint {
  /** e.g. http://127.0.0.1:8500/v1 */
  readonly baseUrl: string;
  readonly token: string | undefined;
}

/**
 * Resolves the agent URL and token: config first, then CONSUL_HTTP_ADDR / CONSUL_HTTP_TOKEN, then
 * Consul's defaults. Throws an Error naming the field (or variable) when the address is unusable.
 */
export function resolveConsulEndpoint(conf: Pick<ConsulConfig, 'address' | 'token'>, env: NodeJS.ProcessEnv = process.env): ConsulEndpoint {
  const fromEnv = env.CONSUL_HTTP_ADDR?.trim();
  const raw = conf.address ?? (fromEnv || DEFAULT_CONSUL_ADDRESS);
  const source = conf.address !== undefined ? 'discovery.consul.address' : fromEnv ? 'CONSUL_HTTP_ADDR' : 'default address';
  const token = conf.token ?? (env.CONSUL_HTTP_TOKEN?.trim() || undefined);
  return { baseUrl: parseAgentAddress(raw, source), token };
}

/** Turns `host:port` or `http(s)://host:port` into the client's base URL; throws naming `source`. */
export function parseAgentAddress(raw: string, source: string): string {
  if (/^unix:/i.test(raw)) throw new Error(`${source}: unix sockets are not supported, use host:port`);
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(raw) ? raw : `http://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`${source}: expected host:port or http(s)://host:port`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${source}: expected an http or https address`);
  if (url.pathname !== '/' || url.search || url.hash) throw new Error(`${source}: expected host:port without a path`);
  const port = url.port || (url.protocol === 'https:' ? '443' : '8500');
  return `${url.protocol}//${url.hostname}:${port}/v1`;
}
