/** The admin API on a real listener: routes, readiness through the lifecycle, redaction, loopback default. */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { validateConfig } from '../../sidecar/config/load.ts';
import { isLoopback, redactSecrets } from '../../sidecar/admin/server.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { silentLogger } from '../../sidecar/telemetry/logger.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

async function get(url: string): Promise<{ status: number; body: unknown; headers: Record<string, unknown> }> {
  const res = await request(url);
  return { status: res.statusCode, headers: res.headers, body: await res.body.json() };
}

describe('admin API', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function backend(name: string): Promise<TestBackend> {
    const b = await startBackend(name);
    cleanup.push(() => b.close());
    return b;
  }

  it('serves /live, /ready, /config and /endpoints', async () => {
    const a = await backend('a');
    const sidecar = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', balancer: 'least_request', endpoints: [{ address: '127.0.0.1', port: a.port, weight: 3, tags: ['v1'] }] }],
    });
    cleanup.push(() => sidecar.stop());
    const admin = adminUrl(sidecar);
    expect(await get(`${admin}/live`)).toMatchObject({ status: 200, body: { live: true } });
    expect(await get(`${admin}/ready`)).toMatchObject({ status: 200, body: { ready: true, state: 'serving' } });

    const config = await get(`${admin}/config`);
    expect(config.status).toBe(200);
    expect(config.headers['cache-control']).toBe('no-store');
    expect(config.body).toEqual(JSON.parse(JSON.stringify(sidecar.config)));

    const endpoints = await get(`${admin}/endpoints`);
    expect(endpoints.status).toBe(200);
    expect(endpoints.body).toMatchObject({
      upstreams: {
        greeter: {
          service: 'greeter',
          discovered: true,
          endpoints: [{ address: '127.0.0.1', port: a.port, weight: 3, tags: ['v1'], state: 'healthy', activeRequests: 0 }],
        },
      },
      providers: [{ provider: 'static', state: 'ok' }],
    });
  });

  it('shows requests in flight and ejected endpoints on /endpoints', async () => {
    const a = await backend('a');
    a.mode = { kind: 'hang' };
    const sidecar = await startSidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: a.port }] }] });
    cleanup.push(() => sidecar.stop());
    const pending = request(`${upstreamUrl(sidecar, 'greeter')}/slow`).catch(() => undefined);
    await eventually('the request reached the backend', () => a.hits === 1);
    sidecar.clusters.get('greeter')!.endpoints[0]!.ejectedUntil = Date.now() + 60_000;
    const body = (await get(`${adminUrl(sidecar)}/endpoints`)).body as { upstreams: { greeter: { endpoints: Array<Record<string, unknown>> } } };
    expect(body.upstreams.greeter.endpoints[0]).toMatchObject({ activeRequests: 1, state: 'ejected' });
    expect(typeof body.upstreams.greeter.endpoints[0]!.ejectedUntil).toBe('string');
    await a.close();
    await pending;
  });

  it('answers 404 with the route list for an unknown path and 405 for a wrong method', async () => {
    const sidecar = await startSidecar({ service: { name: 'frontend', port: 1 } });
    cleanup.push(() => sidecar.stop());
    const missing = await get(`${adminUrl(sidecar)}/nope`);
    expect(missing.status).toBe(404);
    expect((missing.body as { routes: string[] }).routes).toEqual(expect.arrayContaining(['GET /ready', 'GET /live', 'GET /config', 'GET /endpoints', 'POST /shutdown']));
    const res = await request(`${adminUrl(sidecar)}/ready`, { method: 'DELETE' });
    expect(res.statusCode).toBe(405);
    await res.body.dump();
  });

  it('binds to 127.0.0.1 when admin.address is not set', async () => {
    const config = validateConfig({ service: { name: 'frontend', port: 1 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { port: 0 }, logging: { level: 'silent' } });
    expect(config.admin.address).toBe('127.0.0.1');
    const sidecar = new Sidecar(config, { log: silentLogger() });
    await sidecar.start();
    cleanup.push(() => sidecar.stop());
    expect(sidecar.admin.server.address()).toMatchObject({ address: '127.0.0.1' });
  });

  it('redacts secret-looking fields in /config, at any depth', async () => {
    const base = validateConfig({ service: { name: 'frontend', port: 1 }, inbound: { address: '127.0.0.1', port: 0 }, admin: { port: 0 }, logging: { level: 'silent' } });
    // A config carrying secrets the way features add them (discovery tokens, key passphrases).
    const withSecrets = { ...base, extra: { token: 'tok-123', nested: [{ password: 'pw', privateKeyPath: '/k.pem', name: 'kept' }], key: 'k' } };
    const sidecar = new Sidecar(withSecrets as typeof base, { log: silentLogger() });
    await sidecar.start();
    cleanup.push(() => sidecar.stop());
    const text = await (await request(`${adminUrl(sidecar)}/config`)).body.text();
    for (const secret of ['tok-123', '"pw"', '/k.pem', '"k"']) expect(text).not.toContain(secret);
    expect(JSON.parse(text).extra).toEqual({ token: '[redacted]', nested: [{ password: '[redacted]', privateKeyPath: '[redacted]', name: 'kept' }], key: '[redacted]' });
    expect(redactSecrets({ clientSecret: 's', passphrase: 'p', keyFile: undefined })).toEqual({ clientSecret: '[redacted]', passphrase: '[redacted]', keyFile: undefined });
  });

  it('POST /shutdown from loopback stops the sidecar (for Jobs); remote callers are refused', async () => {
    const sidecar = await startSidecar({ service: { name: 'job', port: 1 } });
    const res = await request(`${adminUrl(sidecar)}/shutdown`, { method: 'POST' });
    expect(res.statusCode).toBe(202);
    await res.body.dump();
    await sidecar.stopped;
    expect(sidecar.state).toBe('stopped');
    for (const address of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1']) expect(isLoopback(address), address).toBe(true);
    for (const address of ['10.0.0.5', '::ffff:10.0.0.5', 'fe80::1', '0.0.0.0', undefined]) expect(isLoopback(address), String(address)).toBe(false);
  });

  it('reports 503 on /ready while draining, then stops', async () => {
    const a = await backend('a');
    a.mode = { kind: 'hang' };
    const sidecar = await startSidecar({ service: { name: 'app', port: a.port } });
    const admin = adminUrl(sidecar);
    const inFlight = request(`http://127.0.0.1:${sidecar.ports.inbound}/hold`).catch((err: Error) => err);
    await eventually('request in flight', () => a.hits === 1);
    const stopping = sidecar.stop();
    expect(await get(`${admin}/ready`)).toMatchObject({ status: 503, body: { ready: false, state: 'draining' } });
    expect((await get(`${admin}/live`)).status).toBe(200);
    a.mode = { kind: 'ok' };
    await a.close();
    await stopping;
    await inFlight;
    expect(sidecar.state).toBe('stopped');
  });
});
