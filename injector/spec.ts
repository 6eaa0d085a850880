/**
 * What to inject, read from Kubernetes annotations or compose labels (`meshlet.io/*`), and the sidecar
 * config it becomes. Bad values are reported naming the annotation and the workload.
 */
import { validateConfig } from '../sidecar/config/load.ts';

export const ANNOTATION_PREFIX = 'meshlet.io/';
export const INJECT = `${ANNOTATION_PREFIX}inject`;
export const STATUS = `${ANNOTATION_PREFIX}status`;
export const DEFAULT_IMAGE = 'meshlet/meshlet:0.1.0';
/** How the image (Dockerfile) runs the CLI: its ENTRYPOINT. Probes exec it inside the container. */
export const IMAGE_CLI = ['node', '--expose-gc', '/opt/meshlet/bin/meshlet.js'] as const;
export const DEFAULT_INBOUND_PORT = 15001;
export const DEFAULT_ADMIN_PORT = 15000;

export interface UpstreamSpec {
  readonly name: string;
  readonly port: number;
  readonly protocol: 'http' | 'tcp';
}

/** Everything the injector needs to know about one workload. */
export interface InjectionSpec {
  readonly workload: string;
  readonly service: string;
  readonly namespace: string;
  readonly appPort: number;
  readonly inboundPort: number;
  readonly adminPort: number;
  readonly protocol: 'http' | 'tcp';
  readonly upstreams: readonly UpstreamSpec[];
  /** Path of a file catalog inside the sidecar (e.g. a mounted ConfigMap), when discovery is by file. */
  readonly catalogPath?: string | undefined;
}

export class InjectionError extends Error {
  override name = 'InjectionError';
}

/** True when the annotations ask for injection. */
export function wantsInjection(annotations: Readonly<Record<string, string>> | undefined): boolean {
  const value = annotations?.[INJECT];
  return value === 'true' || value === 'enabled';
}

function portValue(workload: string, key: string, raw: string | undefined, fallback: number | undefined): number {
  if (raw === undefined || raw === '') {
    if (fallback === undefined) throw new InjectionError(`${workload}: annotation ${ANNOTATION_PREFIX}${key} is required (no container port to default from)`);
    return fallback;
  }
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InjectionError(`${workload}: annotation ${ANNOTATION_PREFIX}${key}: expected integer 1-65535, got "${raw}"`);
  return port;
}

/** Parses `greeter:9001, db:5432/tcp` into upstream specs. */
export function parseUpstreams(workload: string, raw: string | undefined): UpstreamSpec[] {
  if (!raw || raw.trim() === '') return [];
  return raw.split(',').map((item) => {
    const match = /^\s*([a-z0-9]([a-z0-9._-]*[a-z0-9])?):(\d+)(?:\/(http|tcp))?\s*$/i.exec(item);
    if (!match) throw new InjectionError(`${workload}: annotation ${ANNOTATION_PREFIX}upstreams: expected "name:port[/http|tcp]" items, got "${item.trim()}"`);
    const port = Number(match[3]);
    if (port < 1 || port > 65535) throw new InjectionError(`${workload}: annotation ${ANNOTATION_PREFIX}upstreams: port of "${match[1]}" must be 1-65535, got ${port}`);
    return { name: match[1]!, port, protocol: (match[4] ?? 'http') as 'http' | 'tcp' };
  });
}

/** Reads an injection spec from `meshlet.io/*` annotations with workload-derived defaults. */
export function readSpec(workload: string, annotations: Readonly<Record<string, string>>, defaults: { service: string; namespace: string; appPort?: number | undefined; catalogPath?: string | undefined }): InjectionSpec {
  const get = (key: string) => annotations[`${ANNOTATION_PREFIX}${key}`];
  const protocol = get('protocol') ?? 'http';
  if (protocol !== 'http' && protocol !== 'tcp') throw new InjectionError(`${workload}: annotation ${ANNOTATION_PREFIX}protocol: expected http or tcp, got "${protocol}"`);
  return {
    workload,
    service: get('service') ?? defaults.service,
    namespace: defaults.namespace,
    appPort: portValue(workload, 'port', get('port'), defaults.appPort),
    inboundPort: portValue(workload, 'inbound-port', get('inbound-port'), DEFAULT_INBOUND_PORT),
    adminPort: portValue(workload, 'admin-port', get('admin-port'), DEFAULT_ADMIN_PORT),
    protocol,
    upstreams: parseUpstreams(workload, get('upstreams')),
    catalogPath: defaults.catalogPath,
  };
}

/**
 * The sidecar config for a spec, as the user-level JSON the sidecar reads from MESHLET_CONFIG (defaults
 * left out so it stays readable in `kubectl describe`), validated exactly as the sidecar will validate it.
 * `endpointsFor` supplies static endpoints where the platform can name them (compose service DNS);
 * otherwise discovery provides them.
 */
export function sidecarConfigJson(spec: InjectionSpec, endpointsFor?: (upstream: string) => Array<{ address: string; port: number }>): string {
  const raw = {
    service: { name: spec.service, namespace: spec.namespace, port: spec.appPort },
    inbound: { port: spec.inboundPort, protocol: spec.protocol },
    admin: { port: spec.adminPort },
    upstreams: spec.upstreams.map((u) => {
      const endpoints = endpointsFor?.(u.name) ?? [];
      return { name: u.name, port: u.port, protocol: u.protocol, ...(endpoints.length > 0 ? { endpoints } : {}) };
    }),
    ...(spec.catalogPath ? { discovery: { file: { path: spec.catalogPath } } } : {}),
  };
  try {
    validateConfig(raw, `${spec.workload} annotations`);
  } catch (err) {
    throw new InjectionError(`${spec.workload}: the annotations give an invalid sidecar config: ${(err as Error).message}`);
  }
  return JSON.stringify(raw);
}

/** The env var that tells the app where an upstream's local listener is, e.g. MESHLET_UPSTREAM_GREETER_URL. */
export function upstreamEnvVar(upstream: UpstreamSpec): { name: string; value: string } {
  return { name: `MESHLET_UPSTREAM_${upstream.name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}_URL`, value: `${upstream.protocol}://127.0.0.1:${upstream.port}` };
}
