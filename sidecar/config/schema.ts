/**
 * The single source of truth for Meshlet's configuration: every field, its default and why it exists.
 * Types are inferred from this schema; nothing else declares config shapes.
 */
import { z } from 'zod';
import { duration } from './duration.ts';
import { host, listenPort, port, serviceName } from './fields.ts';
import { circuitBreakerSchema, connectionLimitSchema, hashPolicySchema, healthCheckSchema, outlierDetectionSchema, rateLimitSchema, retrySchema, stickySchema } from '../resilience/config.ts';
import { consulSchema } from '../discovery/consul-config.ts';
import { telemetrySchema } from '../telemetry/config.ts';
import { securitySchema } from '../security/config.ts';
import { trimMemorySchema } from '../memory-trim.ts';
import { workersSchema } from '../workers.ts';
import { tapSchema, traceStoreSchema } from '../admin/views-config.ts';
import { proxyListenerSchema, routesSchema } from '../routing/config.ts';
import { edgeSchema } from '../edge/config.ts';

export const DEFAULT_ADMIN_PORT = 15000;
export const DEFAULT_INBOUND_PORT = 15001;
export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_POOL_IDLE_MS = 3000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;
/** 0: outbound closes as soon as inbound has drained. Kubernetes native sidecars stop after the app anyway. */
export const DEFAULT_OUTBOUND_GRACE_MS = 0;
export const DEFAULT_MAX_REQUEST_HEAD_BYTES = 64 * 1024;
export const DEFAULT_REQUEST_HEAD_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT = 128;

const timeoutsSchema = z
  .strictObject({
    connect: duration(DEFAULT_CONNECT_TIMEOUT_MS, 'Time allowed to open a connection to an endpoint'),
    request: duration(DEFAULT_REQUEST_TIMEOUT_MS, 'Time allowed for the whole exchange until response headers arrive, across all retries; 0 disables'),
    idle: duration(DEFAULT_IDLE_TIMEOUT_MS, 'A connection (client side or TCP pipe) or response body with no bytes for this long is closed (checked every quarter of it: up to a quarter later, never earlier)'),
    poolIdle: duration(DEFAULT_POOL_IDLE_MS, 'Pooled upstream connections unused this long are closed (after three quarters to all of it, never later)'),
  })
  .default({
    connect: DEFAULT_CONNECT_TIMEOUT_MS,
    request: DEFAULT_REQUEST_TIMEOUT_MS,
    idle: DEFAULT_IDLE_TIMEOUT_MS,
    poolIdle: DEFAULT_POOL_IDLE_MS,
  })
  .describe('Timeouts; durations accept 500ms, 2s, 1m or milliseconds');

export const endpointSchema = z
  .strictObject({
    address: host().describe('IP or host name of the endpoint (for a meshed peer: its sidecar inbound)'),
    port: port().describe('Port of the endpoint'),
    weight: z.int().min(1).max(1000).default(1).describe('Relative share of traffic, 1-1000 (default 1)'),
    tags: z.array(z.string()).default([]).describe('Free-form tags, usable by discovery filters'),
  })
  .describe('One instance of a service');

export const BALANCERS = ['round_robin', 'least_request', 'random', 'p2c_ewma', 'ring_hash', 'maglev'] as const;
export const PROTOCOLS = ['http', 'http2', 'grpc', 'tcp'] as const;

export const upstreamSchema = z
  .strictObject({
    name: serviceName().describe('Name of this upstream; also the discovered service name unless `service` is set'),
    service: serviceName().optional().describe('Service to discover for this upstream (default: `name`)'),
    port: listenPort().describe('Local port the app calls to reach this upstream'),
    address: host().default('127.0.0.1').describe('Local address of the upstream listener (default 127.0.0.1)'),
    protocol: z.enum(PROTOCOLS).default('http').describe('http (L7, HTTP/1.1), http2 (h2c to plaintext peers, h2 by ALPN under mTLS), grpc (http2 with gRPC statuses and deadlines) or tcp (L4 byte pipe)'),
    balancer: z.enum(BALANCERS).default('round_robin').describe('Endpoint picker: round_robin (weighted), least_request (P2C), random, p2c_ewma (P2C on peak-EWMA latency), ring_hash or maglev (consistent hash on `hashPolicy`)'),
    timeouts: timeoutsSchema,
    maxConnectionsPerEndpoint: z.int().min(1).default(DEFAULT_MAX_CONNECTIONS_PER_ENDPOINT).describe('Pooled connections per endpoint (default 128)'),
    endpoints: z.array(endpointSchema).default([]).describe('Static endpoints, merged with discovered ones'),
    retries: retrySchema,
    circuitBreaker: circuitBreakerSchema,
    outlierDetection: outlierDetectionSchema,
    healthCheck: healthCheckSchema.optional(),
    rateLimit: rateLimitSchema.optional(),
    connectionLimit: connectionLimitSchema.optional(),
    hashPolicy: hashPolicySchema.optional(),
    sticky: stickySchema.optional(),
    routes: routesSchema,
  })
  .describe('A service this app calls, exposed on a local port');

export const configSchema = z
  .strictObject({
    service: z
      .strictObject({
        name: serviceName().describe('Name of the local service this sidecar fronts'),
        namespace: serviceName().default('default').describe('Namespace, part of the SPIFFE identity (default "default")'),
        address: host().default('127.0.0.1').describe('Address of the local app (default 127.0.0.1)'),
        port: port().describe('Port the local app listens on'),
        tags: z.array(z.string()).default([]).describe('Tags announced to discovery'),
      })
      .describe('The local app'),
    inbound: z
      .strictObject({
        address: host().default('0.0.0.0').describe('Address peers reach this sidecar on (default 0.0.0.0)'),
        port: listenPort().default(DEFAULT_INBOUND_PORT).describe(`Inbound listener port (default ${DEFAULT_INBOUND_PORT})`),
        protocol: z.enum(PROTOCOLS).default('http').describe('Protocol of the local app: http, http2 (h2c), grpc or tcp; peers reach http2/grpc inbound over h2 (h2c, or ALPN h2 under mTLS)'),
        timeouts: timeoutsSchema,
        rateLimit: rateLimitSchema.optional(),
        connectionLimit: connectionLimitSchema.optional(),
      })
      .prefault({})
      .describe('Listener for traffic from peers to the local app'),
    upstreams: z.array(upstreamSchema).default([]).describe('Services this app calls'),
    proxy: proxyListenerSchema,
    edge: edgeSchema,
    discovery: z
      .strictObject({
        file: z
          .strictObject({
            path: z.string().min(1).describe('YAML/JSON catalog: services -> endpoints; watched and applied on change. A relative path is resolved from the config file directory'),
          })
          .optional()
          .describe('File catalog provider'),
        consul: consulSchema.optional().describe('Consul provider and self-registration (see docs/consul.md)'),
      })
      .prefault({})
      .describe('Where endpoints come from, besides static ones'),
    admin: z
      .strictObject({
        address: host().default('127.0.0.1').describe('Admin API address; loopback by default because it exposes config and shutdown'),
        port: listenPort().default(DEFAULT_ADMIN_PORT).describe(`Admin API port (default ${DEFAULT_ADMIN_PORT})`),
        traces: traceStoreSchema,
        tap: tapSchema,
      })
      .prefault({})
      .describe('Admin API: /ready, /live, /config, /endpoints'),
    limits: z
      .strictObject({
        maxRequestHeadBytes: z.int().min(1024).max(1024 * 1024).default(DEFAULT_MAX_REQUEST_HEAD_BYTES).describe('Largest request head accepted; larger gets 431 (default 64 KiB)'),
        requestHeadTimeout: duration(DEFAULT_REQUEST_HEAD_TIMEOUT_MS, 'A client must send its whole request head within this, or gets 408 (slowloris protection)'),
      })
      .prefault({})
      .describe('Protocol limits'),
    shutdown: z
      .strictObject({
        drainTimeout: duration(DEFAULT_DRAIN_TIMEOUT_MS, 'On SIGTERM, in-flight requests get this long to finish before connections are closed'),
        outboundGrace: duration(
          DEFAULT_OUTBOUND_GRACE_MS,
          'On SIGTERM, outbound listeners keep accepting new requests at least this long while inbound is refused, for an app that still calls out as it drains; capped by drainTimeout',
        ),
      })
      .prefault({})
      .describe('Graceful shutdown'),
    logging: z
      .strictObject({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info').describe('Log level (default info)'),
        accessLog: z.boolean().default(true).describe('One JSON line per proxied request (default true)'),
      })
      .prefault({})
      .describe('Logs (JSON on stdout)'),
    telemetry: telemetrySchema.describe('Traces (OpenTelemetry over OTLP/HTTP) and metrics (Prometheus at admin /metrics)'),
    security: securitySchema,
    workers: workersSchema,
    trimMemory: trimMemorySchema,
  })
  .describe('Meshlet sidecar configuration');

export type MeshletConfig = z.infer<typeof configSchema>;
export type UpstreamConfig = z.infer<typeof upstreamSchema>;
export type EndpointConfig = z.infer<typeof endpointSchema>;
export type TimeoutsConfig = z.infer<typeof timeoutsSchema>;
export type Balancer = (typeof BALANCERS)[number];
