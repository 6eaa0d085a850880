/**
 * What a hot reload would change: a pure comparison of the config in force with the next one.
 * `refused` lists every field that cannot change while the sidecar runs (the reload is then refused
 * and the old config stays in force); the rest says which parts to rebuild, so the reload touches
 * only what changed and everything else keeps its state (breakers, ejections, pooled connections).
 */
import type { MeshletConfig, UpstreamConfig } from './schema.ts';

export interface UpstreamChanges {
  /** New upstreams: a cluster and a listener to create. */
  readonly added: readonly string[];
  /** Gone upstreams: their listener drains and closes. */
  readonly removed: readonly string[];
  /**
   * Same listener, new behaviour (timeouts, balancer, retries, breaker...): a new handler is swapped into
   * the listener, so established client connections and requests under way carry on.
   */
  readonly changed: readonly string[];
  /** A new listener is needed (address, port, protocol, discovered service or connection limit changed); the old one drains. */
  readonly rebound: readonly string[];
}

export interface ConfigDiff {
  /** One message per field that needs a restart, e.g. `service.name cannot change without a restart`. */
  readonly refused: readonly string[];
  readonly upstreams: UpstreamChanges;
  /** Some upstream's static `endpoints` changed: re-emit the static catalog. */
  readonly staticEndpoints: boolean;
  /** Inbound timeouts or rate limit changed: new inbound handler and local-app pool settings. */
  readonly inbound: boolean;
  /** service.address or service.port changed: the local app moved. */
  readonly localApp: boolean;
  /** logging.level changed. */
  readonly logLevel: boolean;
  /** Paths of every changed field, for the log line of an applied reload. */
  readonly changedFields: readonly string[];
}

/**
 * Fields read once at start (listeners bound, identity issued, registration made, telemetry wired).
 * Everything not listed here or under `upstreams` can change at runtime.
 */
export const RESTART_ONLY_FIELDS: readonly string[] = [
  'service.name',
  'service.namespace',
  'service.tags',
  'inbound.address',
  'inbound.port',
  'inbound.protocol',
  'inbound.connectionLimit',
  'admin',
  'discovery',
  'limits',
  'logging.accessLog',
  'telemetry',
  'security',
  'workers',
  'trimMemory',
  'proxy',
  'edge',
];

/** Upstream fields whose change needs a new listener (or a new cluster for another service). */
const REBIND_FIELDS: ReadonlyArray<keyof UpstreamConfig> = ['address', 'port', 'protocol', 'service', 'connectionLimit'];

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Deep equality of plain config values (objects, arrays, scalars). */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of keys) if (!sameValue(a[key], b[key])) return false;
    return true;
  }
  return false;
}

/** Leaf paths (objects descended, arrays and scalars compared whole) where `a` and `b` differ. */
export function changedPaths(a: unknown, b: unknown, prefix: string): string[] {
  if (isObject(a) && isObject(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((key) => changedPaths(a[key], b[key], prefix === '' ? key : `${prefix}.${key}`));
  }
  return sameValue(a, b) ? [] : [prefix];
}

function at(config: unknown, path: string): unknown {
  let cur = config;
  for (const key of path.split('.')) cur = isObject(cur) ? cur[key] : undefined;
  return cur;
}

const serviceOf = (u: UpstreamConfig) => u.service ?? u.name;

/** Compares the config in force with the next one. */
export function diffConfig(current: Readonly<MeshletConfig>, next: Readonly<MeshletConfig>): ConfigDiff {
  const refused = RESTART_ONLY_FIELDS.flatMap((field) => changedPaths(at(current, field), at(next, field), field)).map(
    (path) => `${path} cannot change without a restart`,
  );

  const before = new Map(current.upstreams.map((u) => [u.name, u]));
  const after = new Map(next.upstreams.map((u) => [u.name, u]));
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  const rebound: string[] = [];
  const changedFields: string[] = [];
  let staticEndpoints = false;
  for (const name of before.keys()) if (!after.has(name)) removed.push(name);
  next.upstreams.forEach((upstream, i) => {
    const old = before.get(upstream.name);
    if (!old) {
      added.push(upstream.name);
      changedFields.push(`upstreams[${i}] (added ${upstream.name})`);
      if (upstream.endpoints.length > 0) staticEndpoints = true;
      return;
    }
    const fields = changedPaths(old, upstream, '').filter((f) => f !== 'endpoints' || !sameValue(old.endpoints, upstream.endpoints));
    if (fields.length === 0) return;
    changedFields.push(...fields.map((f) => `upstreams[${i}].${f}`));
    if (fields.includes('endpoints')) staticEndpoints = true;
    const behaviour = fields.filter((f) => f !== 'endpoints');
    if (behaviour.length === 0) return;
    if (REBIND_FIELDS.some((f) => behaviour.some((path) => path === f || path.startsWith(`${f}.`)))) rebound.push(upstream.name);
    else changed.push(upstream.name);
  });
  for (const name of removed) {
    changedFields.push(`upstreams (removed ${name})`);
    if (before.get(name)!.endpoints.length > 0) staticEndpoints = true;
  }

  // Consul watches the services it was started with; a service it has never heard of needs a restart.
  if (current.discovery.consul && next.discovery.consul) {
    const watched = new Set(current.upstreams.map(serviceOf));
    next.upstreams.forEach((upstream, i) => {
      if (!watched.has(serviceOf(upstream))) refused.push(`upstreams[${i}].service: "${serviceOf(upstream)}" is not watched in Consul yet; a new Consul service needs a restart`);
    });
  }

  const inboundPaths = [
    ...changedPaths(current.inbound.timeouts, next.inbound.timeouts, 'inbound.timeouts'),
    ...changedPaths(current.inbound.rateLimit, next.inbound.rateLimit, 'inbound.rateLimit'),
  ];
  const localPaths = [...changedPaths(current.service.address, next.service.address, 'service.address'), ...changedPaths(current.service.port, next.service.port, 'service.port')];
  const otherPaths = [...changedPaths(current.logging.level, next.logging.level, 'logging.level'), ...changedPaths(current.shutdown, next.shutdown, 'shutdown')];
  changedFields.unshift(...localPaths, ...inboundPaths, ...otherPaths);
  return {
    refused,
    upstreams: { added, removed, changed, rebound },
    staticEndpoints,
    inbound: inboundPaths.length > 0,
    localApp: localPaths.length > 0,
    logLevel: current.logging.level !== next.logging.level,
    changedFields,
  };
}

/** True when applying `diff` would change nothing. */
export function isEmptyDiff(diff: ConfigDiff): boolean {
  return diff.changedFields.length === 0 && diff.refused.length === 0;
}
