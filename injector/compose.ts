/**
 * docker-compose injection: each service labelled `meshlet.io/inject: "true"` gets a `<name>-meshlet`
 * service sharing its network namespace (`network_mode: service:<name>`), so the app reaches its
 * upstreams on 127.0.0.1 and peers reach the sidecar at `<name>:<inbound port>`. Upstream endpoints are
 * the peers' compose DNS names, so no discovery service is needed.
 */
import { parse, stringify } from 'yaml';
import { DEFAULT_IMAGE, DEFAULT_INBOUND_PORT, IMAGE_CLI, InjectionError, STATUS, readSpec, sidecarConfigJson, upstreamEnvVar, wantsInjection, type UpstreamSpec } from './spec.ts';

type Json = Record<string, any>;

/** Compose labels may be a map or a list of `key=value`. */
function labelsOf(service: Json): Record<string, string> {
  const labels = service.labels;
  if (!labels) return {};
  if (Array.isArray(labels)) {
    return Object.fromEntries(labels.map((l: string) => {
      const i = String(l).indexOf('=');
      return i < 0 ? [String(l), ''] : [String(l).slice(0, i), String(l).slice(i + 1)];
    }));
  }
  return Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v)]));
}

/** First container port from `expose` or `ports` ("8080", "80:8080", "127.0.0.1:80:8080/tcp", long form). */
function appPortOf(service: Json): number | undefined {
  const first = service.expose?.[0] ?? service.ports?.[0];
  if (first === undefined) return undefined;
  if (typeof first === 'object') return Number(first.target);
  const text = String(first).split('/')[0]!;
  return Number(text.split(':').pop());
}

/** Injects sidecars into a compose file; returns the new YAML and the services injected. */
export function injectCompose(text: string, options: { image?: string } = {}): { yaml: string; injected: string[] } {
  let doc: Json;
  try {
    doc = parse(text) as Json;
  } catch (err) {
    throw new InjectionError(`compose file is not valid YAML: ${(err as Error).message}`);
  }
  const services: Json | undefined = doc?.services;
  if (!services || typeof services !== 'object') throw new InjectionError('compose file has no "services" map');
  // Peers' inbound ports, so an upstream named after a compose service resolves to `<service>:<inbound>`.
  const inboundOf = new Map<string, number>();
  for (const [name, service] of Object.entries(services)) {
    const labels = labelsOf(service as Json);
    if (wantsInjection(labels)) inboundOf.set(labels['meshlet.io/service'] ?? name, Number(labels['meshlet.io/inbound-port'] ?? DEFAULT_INBOUND_PORT));
  }
  const injected: string[] = [];
  for (const [name, service] of Object.entries({ ...services }) as Array<[string, Json]>) {
    const labels = labelsOf(service);
    if (!wantsInjection(labels) || labels[STATUS] === 'injected' || services[`${name}-meshlet`]) continue;
    if (service.network_mode) throw new InjectionError(`service ${name}: has network_mode "${service.network_mode}"; the sidecar must share the service's own network namespace`);
    const spec = readSpec(`service ${name}`, labels, { service: name, namespace: 'default', appPort: appPortOf(service) });
    const endpointsFor = (upstream: string) => {
      const port = inboundOf.get(upstream);
      if (port === undefined) throw new InjectionError(`service ${name}: upstream "${upstream}" is not an injected service of this compose file`);
      return [{ address: upstream, port }];
    };
    services[`${name}-meshlet`] = {
      image: options.image ?? DEFAULT_IMAGE,
      command: ['sidecar', '--config-env', 'MESHLET_CONFIG'],
      environment: { MESHLET_CONFIG: sidecarConfigJson(spec, endpointsFor) },
      network_mode: `service:${name}`,
      depends_on: [name],
      restart: 'unless-stopped',
      healthcheck: { test: ['CMD', ...IMAGE_CLI, 'wait-ready', '--admin', `http://127.0.0.1:${spec.adminPort}`, '--timeout', '1s'], interval: '5s', timeout: '3s', retries: 3, start_period: '5s' },
    };
    service.labels = { ...labels, [STATUS]: 'injected' };
    service.environment = withUpstreamEnv(service.environment, spec.upstreams);
    injected.push(name);
  }
  return { yaml: stringify(doc, { lineWidth: 0 }), injected };
}

function withUpstreamEnv(environment: unknown, upstreams: readonly UpstreamSpec[]): unknown {
  if (upstreams.length === 0) return environment;
  const entries = upstreams.map((u) => {
    const variable = upstreamEnvVar(u);
    return [variable.name, variable.value] as const;
  });
  if (Array.isArray(environment)) return [...environment, ...entries.filter(([k]) => !environment.some((e: string) => String(e).startsWith(`${k}=`))).map(([k, v]) => `${k}=${v}`)];
  return { ...Object.fromEntries(entries), ...((environment as Record<string, string>) ?? {}) };
}
