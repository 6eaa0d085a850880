import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { injectManifests, podPatch } from '../../injector/kubernetes.ts';
import { validateConfig } from '../../sidecar/config/load.ts';

const DEPLOYMENT = `
apiVersion: apps/v1
kind: Deployment
metadata: { name: frontend, namespace: shop }
spec:
  template:
    metadata:
      labels: { app: frontend }
      annotations:
        meshlet.io/inject: "true"
        meshlet.io/upstreams: "greeter:9001, db:5432/tcp"
    spec:
      containers:
        - name: app
          image: shop/frontend:1
          ports: [{ containerPort: 8080 }]
---
apiVersion: v1
kind: Service
metadata: { name: frontend }
spec: { ports: [{ port: 80 }] }
---
apiVersion: batch/v1
kind: Job
metadata: { name: plain }
spec:
  template:
    spec:
      containers: [{ name: job, image: busybox }]
`;

describe('Kubernetes manifest injection', () => {
  it('adds a native sidecar with a config the sidecar accepts, and leaves other documents alone', () => {
    const { yaml, injected } = injectManifests(DEPLOYMENT, { image: 'registry.local/meshlet:dev' });
    expect(injected).toEqual(['Deployment/frontend']);
    const [deployment, service, job] = parseAllDocuments(yaml).map((d) => d.toJS());
    const pod = deployment.spec.template;
    expect(pod.metadata.annotations['meshlet.io/status']).toBe('injected');
    const [sidecar] = pod.spec.initContainers;
    expect(sidecar).toMatchObject({ name: 'meshlet', image: 'registry.local/meshlet:dev', restartPolicy: 'Always', args: ['sidecar', '--config-env', 'MESHLET_CONFIG'] });
    expect(sidecar.startupProbe.exec.command).toContain('wait-ready');
    expect(sidecar.securityContext).toMatchObject({ runAsNonRoot: true, readOnlyRootFilesystem: true, allowPrivilegeEscalation: false });
    const config = validateConfig(JSON.parse(sidecar.env[0].value), 'env');
    expect(config.service).toMatchObject({ name: 'frontend', namespace: 'shop', port: 8080 });
    expect(config.upstreams.map((u) => [u.name, u.port, u.protocol])).toEqual([['greeter', 9001, 'http'], ['db', 5432, 'tcp']]);
    expect(pod.spec.containers[0].env).toEqual([
      { name: 'MESHLET_UPSTREAM_GREETER_URL', value: 'http://127.0.0.1:9001' },
      { name: 'MESHLET_UPSTREAM_DB_URL', value: 'tcp://127.0.0.1:5432' },
    ]);
    expect(service).toEqual(parseAllDocuments(DEPLOYMENT)[1]!.toJS());
    expect(job.spec.template.spec.initContainers).toBeUndefined();
  });

  it('is idempotent: injecting twice changes nothing the second time', () => {
    const once = injectManifests(DEPLOYMENT).yaml;
    const twice = injectManifests(once);
    expect(twice.injected).toEqual([]);
    expect(twice.yaml).toBe(once);
  });

  it('mounts a catalog ConfigMap and points file discovery at it', () => {
    const text = DEPLOYMENT.replace('meshlet.io/inject: "true"', 'meshlet.io/inject: "true"\n        meshlet.io/catalog-configmap: mesh-catalog');
    const pod = parseAllDocuments(injectManifests(text).yaml)[0]!.toJS().spec.template;
    expect(pod.spec.volumes).toEqual([{ name: 'meshlet-catalog', configMap: { name: 'mesh-catalog' } }]);
    const config = JSON.parse(pod.spec.initContainers[0].env[0].value);
    expect(config.discovery.file.path).toBe('/etc/meshlet/catalog/catalog.yaml');
  });

  it('names the annotation and workload when a value is wrong', () => {
    expect(() => injectManifests(DEPLOYMENT.replace('greeter:9001', 'greeter:99999'))).toThrow(/Deployment\/frontend: annotation meshlet\.io\/upstreams: port of "greeter" must be 1-65535, got 99999/);
    expect(() => injectManifests(DEPLOYMENT.replace('ports: [{ containerPort: 8080 }]', 'args: []'))).toThrow(/Deployment\/frontend: annotation meshlet\.io\/port is required/);
    expect(() => injectManifests(DEPLOYMENT.replace('meshlet.io/inject: "true"', 'meshlet.io/inject: "true"\n        meshlet.io/protocol: udp'))).toThrow(/meshlet\.io\/protocol: expected http or tcp, got "udp"/);
  });

  it('builds a JSON patch for a bare Pod that applies to the same result', () => {
    const pod = parse(`
metadata: { name: p, annotations: { meshlet.io/inject: "true" } }
spec: { containers: [{ name: app, image: x, ports: [{ containerPort: 3000 }] }] }`);
    const ops = podPatch(pod, 'ns1');
    expect(ops.map((o) => `${o.op} ${o.path}`)).toEqual(['replace /metadata/annotations', 'add /spec/initContainers', 'replace /spec/containers']);
    expect(JSON.parse(ops[1]!.value[0].env[0].value).service).toEqual({ name: 'p', namespace: 'ns1', port: 3000 });
    expect(podPatch({ metadata: { name: 'q' }, spec: { containers: [{ name: 'a' }] } }, 'ns1')).toEqual([]);
  });
});
