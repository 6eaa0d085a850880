import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { rawExchange } from '../helpers/raw.ts';
import { startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

describe('HTTP/1.1 through outbound -> inbound -> app', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function mesh(): Promise<{ app: TestBackend; client: Sidecar; server: Sidecar }> {
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'greeter', port: app.port } });
    cleanup.push(() => server.stop());
    const client = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }] }],
    });
    cleanup.push(() => client.stop());
    return { app, client, server };
  }

  it('delivers the request to the app and the answer back, with forwarding headers', async () => {
    const { app, client } = await mesh();
    const res = await request(`${upstreamUrl(client, 'greeter')}/hello?x=1`, { headers: { 'x-custom': 'kept' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ backend: 'app', method: 'GET', url: '/hello?x=1' });
    expect(res.headers.via).toBe('1.1 meshlet, 1.1 meshlet');
    expect(app.lastHeaders?.['x-custom']).toBe('kept');
    expect(app.lastHeaders?.['x-forwarded-for']).toBe('127.0.0.1, 127.0.0.1');
    expect(app.lastHeaders?.['x-forwarded-proto']).toBe('http');
    expect(app.lastHeaders?.forwarded).toMatch(/^for=127\.0\.0\.1;proto=http;host="127\.0\.0\.1:\d+", for=127\.0\.0\.1;proto=http/);
    expect(app.lastHeaders?.via).toBe('1.1 meshlet, 1.1 meshlet');
  });

  it('drops hop-by-hop headers, including those named in Connection', async () => {
    const { app, client } = await mesh();
    const reply = await rawExchange(client.ports.upstreams.greeter!, 'GET /h HTTP/1.1\r\nhost: x\r\nconnection: close, x-hop\r\nx-hop: 1\r\nkeep-alive: timeout=5\r\nte: trailers\r\nx-end: 2\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 200/);
    expect(app.lastHeaders?.['x-hop']).toBeUndefined();
    expect(app.lastHeaders?.['keep-alive']).toBeUndefined();
    expect(app.lastHeaders?.te).toBeUndefined();
    expect(app.lastHeaders?.['x-end']).toBe('2');
  });

  it('forwards request bodies of every method', async () => {
    const { client } = await mesh();
    const res = await request(`${upstreamUrl(client, 'greeter')}/items`, { method: 'POST', body: JSON.stringify({ a: 1 }), headers: { 'content-type': 'application/json' } });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({ method: 'POST', url: '/items' });
  });
});
