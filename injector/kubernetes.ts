/**
 * Kubernetes injection: adds Meshlet as a native sidecar (an init container with `restartPolicy: Always`,
 * Kubernetes >= 1.29). The kubelet starts it before the app containers and waits for its startup probe,
 * so the app's first calls find the sidecar ready; it stops after the app containers, so the app's last
 * calls during its drain still go out; and a Job completes when its app container exits.
 */
import { parseAllDocuments, stringify } from 'yaml';
import { DEFAULT_IMAGE, IMAGE_CLI, InjectionError, STATUS, readSpec, sidecarConfigJson, upstreamEnvVar, wantsInjection, type InjectionSpec } from './spec.ts';

export const SIDECAR_NAME = 'meshlet';
export const CATALOG_ANNOTATION = 'meshlet.io/catalog-configmap';
const CATALOG_DIR = '/etc/meshlet/catalog';

export interface KubeOptions {
  readonly image?: string;
}

type Json = Record<string, any>;

/** The path of the pod template inside each workload kind that has one. */
function podTemplateOf(doc: Json): { template: Json; kind: string } | undefined {
  switch (doc.kind) {
    case 'Pod':
      return { template: doc, kind: 'Pod' };
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'Job':
      return doc.spec?.template ? { template: doc.spec.template, kind: doc.kind } : undefined;
    case 'CronJob':
      return doc.spec?.jobTemplate?.spec?.template ? { template: doc.spec.jobTemplate.spec.template, kind: 'CronJob' } : undefined;
    default:
      return undefined;
  }
}

/** The sidecar container for a spec. */
export function sidecarContainer(spec: InjectionSpec, image: string): Json {
  const probe = { exec: { command: [...IMAGE_CLI, 'wait-ready', '--admin', `http://127.0.0.1:${spec.adminPort}`, '--timeout', '1s'] } };
  return {
    name: SIDECAR_NAME,
    image,
    restartPolicy: 'Always',
    args: ['sidecar', '--config-env', 'MESHLET_CONFIG'],
    env: [{ name: 'MESHLET_CONFIG', value: sidecarConfigJson(spec) }],
    ports: [{ name: 'mesh-inbound', containerPort: spec.inboundPort, protocol: 'TCP' }],
    // The admin API stays on loopback, so probes run inside the container rather than from the kubelet.
    startupProbe: { ...probe, periodSeconds: 1, failureThreshold: 120 },
    readinessProbe: { ...probe, periodSeconds: 5 },
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    securityContext: { runAsNonRoot: true, runAsUser: 10001, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
    ...(spec.catalogPath ? { volumeMounts: [{ name: 'meshlet-catalog', mountPath: CATALOG_DIR, readOnly: true }] } : {}),
  };
}

/**
 * Injects into one pod template in place (metadata + spec). Returns false when the template does not
 * ask for injection or already has it (injection is idempotent).
 */
export function injectPodTemplate(template: Json, workload: string, namespace: string, options: KubeOptions = {}, workloadAnnotations: Record<string, string> = {}): boolean {
  template.metadata ??= {};
  const annotations: Record<string, string> = { ...workloadAnnotations, ...(template.metadata.annotations ?? {}) };
  if (!wantsInjection(annotations) || annotations[STATUS] === 'injected') return false;
  const spec = template.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) throw new InjectionError(`${workload}: pod template has no containers`);
  if ((spec.initContainers ?? []).some((c: Json) => c.name === SIDECAR_NAME)) return false;
  const app = spec.containers[0];
  const firstPort = app.ports?.[0]?.containerPort as number | undefined;
  const catalogMap = annotations[CATALOG_ANNOTATION];
  const injection = readSpec(workload, annotations, {
    service: template.metadata.labels?.app ?? template.metadata.labels?.['app.kubernetes.io/name'] ?? workload.split('/').pop()!,
    namespace,
    appPort: firstPort,
    catalogPath: catalogMap ? `${CATALOG_DIR}/catalog.yaml` : undefined,
  });
  // Native sidecars go first so they start before any other init container that may call out.
  spec.initContainers = [sidecarContainer(injection, options.image ?? DEFAULT_IMAGE), ...(spec.initContainers ?? [])];
  if (catalogMap) spec.volumes = [...(spec.volumes ?? []), { name: 'meshlet-catalog', configMap: { name: catalogMap } }];
  for (const container of spec.containers) {
    const env = container.env ?? [];
    for (const u of injection.upstreams) {
      const variable = upstreamEnvVar(u);
      if (!env.some((e: Json) => e.name === variable.name)) env.push(variable);
    }
    if (env.length > 0) container.env = env;
  }
  template.metadata.annotations = { ...(template.metadata.annotations ?? {}), [STATUS]: 'injected' };
  return true;
}

/** Injects every workload in a (multi-document) manifest that asks for it; returns the new YAML. */
export function injectManifests(text: string, options: KubeOptions = {}): { yaml: string; injected: string[] } {
  const docs = parseAllDocuments(text);
  const injected: string[] = [];
  const out: string[] = [];
  docs.forEach((doc, index) => {
    if (doc.errors.length > 0) throw new InjectionError(`document ${index + 1}: not valid YAML: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as Json | null;
    if (value && typeof value === 'object') {
      const found = podTemplateOf(value);
      const workload = `${value.kind}/${value.metadata?.name ?? `document-${index + 1}`}`;
      if (found && injectPodTemplate(found.template, workload, value.metadata?.namespace ?? 'default', options, value.metadata?.annotations ?? {})) injected.push(workload);
    }
    out.push(stringify(value, { lineWidth: 0 }));
  });
  return { yaml: out.join('---\n'), injected };
}

/** JSON Patch (RFC 6902) that injects the sidecar into a Pod object, for the admission webhook. */
export function podPatch(pod: Json, namespace: string, options: KubeOptions = {}): Json[] {
  const copy = structuredClone(pod);
  const name = `Pod/${pod.metadata?.name ?? pod.metadata?.generateName ?? 'unnamed'}`;
  if (!injectPodTemplate(copy, name, namespace, options)) return [];
  const ops: Json[] = [];
  ops.push({ op: pod.metadata?.annotations ? 'replace' : 'add', path: '/metadata/annotations', value: copy.metadata.annotations });
  ops.push({ op: pod.spec.initContainers ? 'replace' : 'add', path: '/spec/initContainers', value: copy.spec.initContainers });
  ops.push({ op: 'replace', path: '/spec/containers', value: copy.spec.containers });
  if (copy.spec.volumes) ops.push({ op: pod.spec.volumes ? 'replace' : 'add', path: '/spec/volumes', value: copy.spec.volumes });
  return ops;
}

