import type { Server } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startWebhook } from '../../injector/webhook.ts';
import { validateConfig } from '../../sidecar/config/load.ts';
import { silentLogger } from '../../sidecar/telemetry/logger.ts';
import { selfSignedCert } from '../helpers/self-signed.ts';

describe('mutating admission webhook over real HTTPS', () => {
  const tls = selfSignedCert();
  const dispatcher = new Agent({ connect: { ca: tls.cert } });
  let server: Server;
  let base: string;

  beforeAll(async () => {
    const started = await startWebhook(0, '127.0.0.1', { ...tls, log: silentLogger() });
    server = started.server;
    base = `https://127.0.0.1:${started.port}`;
  });
  afterAll(async () => {
    await dispatcher.close();
    await new Promise((r) => server.close(r));
  });

  function admission(object: unknown, kind = 'Pod') {
    return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'u-1', kind: { group: '', version: 'v1', kind }, operation: 'CREATE', namespace: 'shop', object } };
  }

  async function post(body: unknown) {
    const res = await request(`${base}/mutate`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': 'application/json' }, dispatcher });
    return { status: res.statusCode, body: (await res.body.json()) as any };
  }

  it('patches an annotated Pod with the sidecar', async () => {
    const pod = { metadata: { name: 'web', labels: { app: 'web' }, annotations: { 'meshlet.io/inject': 'true', 'meshlet.io/upstreams': 'api:9100' } }, spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }] }] } };
    const { status, body } = await post(admission(pod));
    expect(status).toBe(200);
    expect(body.response).toMatchObject({ uid: 'u-1', allowed: true, patchType: 'JSONPatch' });
    const ops = JSON.parse(Buffer.from(body.response.patch, 'base64').toString('utf8'));
    const init = ops.find((o: any) => o.path === '/spec/initContainers');
    expect(init.op).toBe('add');
    const config = validateConfig(JSON.parse(init.value[0].env[0].value), 'patch');
    expect(config.service).toMatchObject({ name: 'web', namespace: 'shop', port: 8080 });
    expect(config.upstreams[0]).toMatchObject({ name: 'api', port: 9100 });
  });

  it('allows Pods that do not ask for injection, and other kinds, unchanged', async () => {
    const plain = await post(admission({ metadata: { name: 'p' }, spec: { containers: [{ name: 'a' }] } }));
    expect(plain.body.response).toEqual({ uid: 'u-1', allowed: true });
    const other = await post(admission({ metadata: { name: 'cm' } }, 'ConfigMap'));
    expect(other.body.response).toEqual({ uid: 'u-1', allowed: true });
  });

  it('refuses a Pod with a wrong annotation, naming it', async () => {
    const pod = { metadata: { name: 'bad', annotations: { 'meshlet.io/inject': 'true', 'meshlet.io/port': 'http' } }, spec: { containers: [{ name: 'a' }] } };
    const { body } = await post(admission(pod));
    expect(body.response.allowed).toBe(false);
    expect(body.response.status.message).toMatch(/Pod\/bad: annotation meshlet\.io\/port: expected integer 1-65535, got "http"/);
  });

  it('answers 400 to bodies that are not AdmissionReviews and stays up', async () => {
    expect((await post('{not json')).status).toBe(400);
    expect((await post({ kind: 'Something' })).status).toBe(400);
    const health = await request(`${base}/healthz`, { dispatcher });
    expect(health.statusCode).toBe(200);
    await health.body.dump();
  });
});
