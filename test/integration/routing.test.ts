/**
 * L7 routing on real sockets: matching by path, host, method and headers; weighted splits; path
 * rewrite; route timeouts; fault injection; the host-routing HTTP proxy listener; routes changed by a
 * hot reload on a kept-alive connection.
 */
import { Agent, request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { Pool, request } from 'undici';
import { validateConfig } from '../../sidecar/config/load.ts';
import { diffConfig } from '../../sidecar/config/diff.ts';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { startSidecar, upstreamUrl, type RawConfig } from '../helpers/sidecar.ts';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function backend(name: string): Promise<TestBackend> {
  const b = await startBackend(name);
  cleanup.push(() => b.close());
  return b;
}

const at = (b: TestBackend) => [{ address: '127.0.0.1', port: b.port }];

/** The raw config the sidecar helper would validate (so a reload can be built from it). */
function fullConfig(raw: RawConfig): RawConfig {
  return {
    inbound: { address: '127.0.0.1', port: 0 },
    admin: { address: '127.0.0.1', port: 0 },
    shutdown: { drainTimeout: '2s' },
    logging: { level: 'silent', accessLog: false },
    ...raw,
    upstreams: (raw.upstreams as RawConfig[]).map((u) => ({ port: 0, ...u })),
  };
}

async function sidecarWith(raw: RawConfig): Promise<Sidecar> {
  const sidecar = await startSidecar(raw);
  cleanup.push(() => sidecar.stop());
  return sidecar;
}

async function call(url: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; backend?: string; url?: string; error?: string }> {
  const res = await request(url, { method: (options.method ?? 'GET') as 'GET', headers: options.headers });
  const text = await res.body.text();
  const body = text.startsWith('{') ? (JSON.parse(text) as { backend?: string; url?: string }) : {};
  return { status: res.statusCode, backend: body.backend, url: body.url, error: res.headers['x-meshlet-error'] as string | undefined };
}

describe('L7 routes', () => {
  it('matches path prefix, exact path, regex, host, method and headers; first match wins; no match goes to the listener upstream', async () => {
    const [main, api, exact, re, host, post, canaryHeader, present] = await Promise.all(['main', 'api', 'exact', 're', 'host', 'post', 'hdr', 'present'].map(backend));
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      upstreams: [
        {
          name: 'main',
          endpoints: at(main!),
          routes: [
            { name: 'by-header', match: { headers: [{ name: 'X-Canary', exact: 'yes' }] }, to: 'hdr' },
            { match: { headers: [{ name: 'x-debug', present: true }, { name: 'x-user', regex: '^admin-' }] }, to: 'present' },
            { match: { path: '/exact' }, to: 'exact' },
            { match: { regex: '^/v[0-9]+/items$' }, to: 're' },
            { match: { host: '*.example.test' }, to: 'host' },
            { match: { method: ['POST', 'put'] }, to: 'post' },
            { match: { prefix: '/api' }, to: 'api' },
          ],
        },
        ...[api, exact, re, host, post, canaryHeader, present].map((b) => ({ name: b!.name, endpoints: at(b!) })),
      ],
    });
    const base = upstreamUrl(sidecar, 'main');
    expect((await call(`${base}/api/users?q=1`)).backend).toBe('api');
    expect((await call(`${base}/exact`)).backend).toBe('exact');
    expect((await call(`${base}/exact/more`)).backend).toBe('main');
    expect((await call(`${base}/v2/items`)).backend).toBe('re');
    expect((await call(`${base}/v2/items/1`)).backend).toBe('main');
    expect((await call(`${base}/x`, { headers: { host: 'shop.example.test:8080' } })).backend).toBe('host');
    expect((await call(`${base}/x`, { headers: { host: 'example.test' } })).backend).toBe('main');
    expect((await call(`${base}/x`, { method: 'PUT' })).backend).toBe('post');
    expect((await call(`${base}/api/x`, { method: 'POST' })).backend).toBe('post');
    expect((await call(`${base}/api`, { headers: { 'x-canary': 'yes' } })).backend).toBe('hdr');
    expect((await call(`${base}/api`, { headers: { 'x-canary': 'no' } })).backend).toBe('api');
    expect((await call(`${base}/p`, { headers: { 'x-debug': '', 'x-user': 'admin-1' } })).backend).toBe('present');
    expect((await call(`${base}/p`, { headers: { 'x-user': 'admin-1' } })).backend).toBe('main');
    expect((await call(`${base}/nothing`)).backend).toBe('main');
    // The query string survives routing.
    expect((await call(`${base}/api/users?q=1`)).url).toBe('/api/users?q=1');
  });

  it('splits traffic by weight (90/10 over 2000 requests, within 6 standard deviations)', async () => {
    const [v1, v2] = await Promise.all([backend('v1'), backend('v2')]);
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      upstreams: [
        { name: 'greeter', endpoints: at(v1), routes: [{ name: 'canary', match: { prefix: '/' }, split: [{ upstream: 'greeter', weight: 90 }, { upstream: 'greeter-v2', weight: 10 }] }] },
        { name: 'greeter-v2', endpoints: at(v2) },
      ],
    });
    const pool = new Pool(upstreamUrl(sidecar, 'greeter'), { connections: 16 });
    cleanup.push(() => pool.close());
    const N = 2000;
    let next = 0;
    const worker = async () => {
      while (next < N) {
        next++;
        const res = await pool.request({ path: '/hello', method: 'GET' });
        await res.body.dump();
        expect(res.statusCode).toBe(200);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    expect(v1.hits + v2.hits).toBe(N);
    // Binomial(2000, 0.1): mean 200, sd 13.4.
    expect(v2.hits).toBeGreaterThan(200 - 6 * 13.4);
    expect(v2.hits).toBeLessThan(200 + 6 * 13.4);
  });

  it('a weight of 0 sends nothing to that upstream', async () => {
    const [v1, v2] = await Promise.all([backend('v1'), backend('v2')]);
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      upstreams: [
        { name: 'greeter', endpoints: at(v1), routes: [{ match: {}, split: [{ upstream: 'greeter', weight: 0 }, { upstream: 'v2', weight: 5 }] }] },
        { name: 'v2', endpoints: at(v2) },
      ],
    });
    for (let i = 0; i < 50; i++) expect((await call(`${upstreamUrl(sidecar, 'greeter')}/`)).backend).toBe('v2');
    expect(v1.hits).toBe(0);
  });

  it('rewrites the matched prefix', async () => {
    const [main, api] = await Promise.all([backend('main'), backend('api')]);
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      upstreams: [
        {
          name: 'main',
          endpoints: at(main),
          routes: [
            { match: { prefix: '/api/v1/' }, to: 'api', rewrite: { prefix: '/' } },
            { match: { prefix: '/legacy' }, to: 'api', rewrite: { prefix: '/v2' } },
          ],
        },
        { name: 'api', endpoints: at(api) },
      ],
    });
    const base = upstreamUrl(sidecar, 'main');
    expect(await call(`${base}/api/v1/users?id=3`)).toMatchObject({ backend: 'api', url: '/users?id=3' });
    expect(await call(`${base}/legacy/orders`)).toMatchObject({ backend: 'api', url: '/v2/orders' });
  });

  it('a route timeout overrides the upstream request timeout, across retries', async () => {
    const slow = await backend('slow');
    slow.mode = { kind: 'slow', delayMs: 1500 };
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      upstreams: [
        {
          name: 'main',
          endpoints: at(slow),
          timeouts: { request: '10s' },
          retries: { maxAttempts: 3 },
          routes: [
            { name: 'quick', match: { prefix: '/quick' }, to: 'main', timeout: '150ms' },
            { name: 'patient', match: { prefix: '/patient' }, to: 'main', timeout: '5s' },
          ],
        },
      ],
    });
    const base = upstreamUrl(sidecar, 'main');
    const started = performance.now();
    const quick = await call(`${base}/quick`);
    expect(quick).toMatchObject({ status: 504, error: 'upstream_timeout' });
    // Never faster than the route timeout; far below the retried 3 x 1.5 s.
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(performance.now() - started).toBeLessThan(1400);
    expect(await call(`${base}/patient`)).toMatchObject({ status: 200, backend: 'slow' });
  });

  it('refuses at config time a route naming an unknown or TCP upstream, naming the field', () => {
    const raw = (routes: unknown[]) =>
      fullConfig({ service: { name: 'app', port: 1 }, upstreams: [{ name: 'main', routes }, { name: 'db', protocol: 'tcp' }] });
    expect(() => validateConfig(raw([{ match: { prefix: '/' }, to: 'nope' }]), 'test')).toThrow(/upstreams\[0\]\.routes\[0\]\.to: no upstream named "nope"/);
    expect(() => validateConfig(raw([{ match: {}, split: [{ upstream: 'main', weight: 1 }, { upstream: 'db', weight: 1 }] }]), 'test')).toThrow(/upstreams\[0\]\.routes\[0\]\.split\[1\]\.upstream: routes can only send to HTTP upstreams/);
    expect(() => validateConfig(raw([{ match: {}, to: 'main', split: [{ upstream: 'main', weight: 1 }] }]), 'test')).toThrow(/upstreams\[0\]\.routes\[0\].*exactly one of `to` or `split`/);
    expect(() => validateConfig(raw([{ match: { regex: '([' }, to: 'main' }]), 'test')).toThrow(/upstreams\[0\]\.routes\[0\]\.match\.regex/);
    expect(() => validateConfig(raw([{ match: { path: '/a' }, to: 'main', rewrite: { prefix: '/b' } }]), 'test')).toThrow(/rewrite\.prefix needs match\.prefix/);
    expect(() => validateConfig(raw([{ match: { prefix: '/' }, to: 'main' }]), 'test')).not.toThrow();
  });
});

describe('fault injection per route', () => {
  it('aborts about the configured share with the configured status, marked proxy-made, never forwarding them', async () => {
    const main = await backend('main');
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      upstreams: [{ name: 'main', endpoints: at(main), routes: [{ name: 'chaos', match: { prefix: '/chaos' }, to: 'main', fault: { abort: { percent: 30, status: 418 } } }] }],
    });
    const base = upstreamUrl(sidecar, 'main');
    let aborted = 0;
    const N = 600;
    for (let i = 0; i < N; i++) {
      const r = await call(`${base}/chaos`);
      if (r.status === 418) {
        expect(r.error).toBe('fault_injected');
        aborted++;
      } else expect(r).toMatchObject({ status: 200, backend: 'main' });
    }
    // Binomial(600, 0.3): mean 180, sd 11.2.
    expect(aborted).toBeGreaterThan(180 - 6 * 11.2);
    expect(aborted).toBeLessThan(180 + 6 * 11.2);
    expect(main.hits).toBe(N - aborted);
    // Other paths of the same listener are untouched.
    for (let i = 0; i < 20; i++) expect((await call(`${base}/calm`)).status).toBe(200);
  });

  it('delays the configured share, then forwards', async () => {
    const main = await backend('main');
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      upstreams: [{ name: 'main', endpoints: at(main), routes: [{ match: { prefix: '/slow' }, to: 'main', fault: { delay: { percent: 100, duration: '300ms' } } }] }],
    });
    const started = performance.now();
    expect(await call(`${upstreamUrl(sidecar, 'main')}/slow`)).toMatchObject({ status: 200, backend: 'main' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(290);
  });
});

describe('host-routing HTTP proxy listener', () => {
  it('routes by Host (with or without port, or absolute-form) to the named upstream, through its routes; unknown host is 503 naming it', async () => {
    const [greeter, v2, users] = await Promise.all([backend('greeter'), backend('v2'), backend('users')]);
    const sidecar = await sidecarWith({
      service: { name: 'app', port: 1 },
      proxy: { port: 0 },
      upstreams: [
        { name: 'greeter', endpoints: at(greeter), routes: [{ match: { prefix: '/v2' }, to: 'greeter-v2' }] },
        { name: 'greeter-v2', endpoints: at(v2) },
        { name: 'users', endpoints: at(users) },
      ],
    });
    const proxy = `http://127.0.0.1:${sidecar.ports.proxy}`;
    expect((await call(`${proxy}/hello`, { headers: { host: 'greeter' } })).backend).toBe('greeter');
    expect((await call(`${proxy}/hello`, { headers: { host: 'USERS:8080' } })).backend).toBe('users');
    expect((await call(`${proxy}/v2/hello`, { headers: { host: 'greeter' } })).backend).toBe('v2');
    // HTTP_PROXY style: absolute-form target.
    const viaProxy = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: sidecar.ports.proxy, path: 'http://greeter/v2/abs?x=1', agent: new Agent() }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(viaProxy.status).toBe(200);
    expect(JSON.parse(viaProxy.body)).toMatchObject({ backend: 'v2', url: '/v2/abs?x=1' });
    const unknown = await request(`${proxy}/x`, { headers: { host: 'nobody' } });
    expect(unknown.statusCode).toBe(503);
    expect(unknown.headers['x-meshlet-error']).toBe('no_endpoint');
    expect(((await unknown.body.json()) as { message: string }).message).toContain('Host "nobody"');
  });
});

describe('routes under hot reload', () => {
  it('applies changed routes on a kept-alive client connection, without dropping it', async () => {
    const [v1, v2] = await Promise.all([backend('v1'), backend('v2')]);
    const raw = (routes?: unknown[]) =>
      fullConfig({
        service: { name: 'app', port: 1 },
        upstreams: [
          { name: 'greeter', endpoints: at(v1), ...(routes ? { routes } : {}) },
          { name: 'v2', endpoints: at(v2) },
        ],
      });
    const sidecar = await sidecarWith(raw());
    const listener = sidecar.listeners().find((l) => l.name === 'outbound:greeter')!.listener;
    let connections = 0;
    listener.server.on('connection', () => connections++);
    const client = new Pool(upstreamUrl(sidecar, 'greeter'), { connections: 1 });
    cleanup.push(() => client.close());
    const via = async (path: string) => {
      const res = await client.request({ path, method: 'GET' });
      return ((await res.body.json()) as { backend: string }).backend;
    };
    expect(await via('/beta/x')).toBe('v1');
    const apply = async (next: RawConfig) => {
      const config = validateConfig(next, 'test');
      const diff = diffConfig(sidecar.config, config);
      expect(diff.refused).toEqual([]);
      expect(await sidecar.applyConfig(config, diff)).toEqual([]);
    };
    await apply(raw([{ match: { prefix: '/beta' }, to: 'v2' }]));
    expect(await via('/beta/x')).toBe('v2');
    expect(await via('/other')).toBe('v1');
    await apply(raw([{ match: { prefix: '/beta' }, split: [{ upstream: 'greeter', weight: 1 }, { upstream: 'v2', weight: 0 }] }]));
    expect(await via('/beta/x')).toBe('v1');
    await apply(raw());
    expect(await via('/beta/x')).toBe('v1');
    expect(connections).toBe(1);
  });

  it('a reload adding an upstream and a route to it serves the route at once; a reload naming an unknown upstream is refused', async () => {
    const [v1, v2] = await Promise.all([backend('v1'), backend('v2')]);
    const base = fullConfig({ service: { name: 'app', port: 1 }, upstreams: [{ name: 'greeter', endpoints: at(v1) }] });
    const sidecar = await sidecarWith(base);
    const next = validateConfig(
      { ...base, upstreams: [{ name: 'greeter', port: 0, endpoints: at(v1), routes: [{ match: { prefix: '/new' }, to: 'fresh' }] }, { name: 'fresh', port: 0, endpoints: at(v2) }] },
      'test',
    );
    const diff = diffConfig(sidecar.config, next);
    expect(diff.upstreams).toMatchObject({ added: ['fresh'], changed: ['greeter'] });
    expect(await sidecar.applyConfig(next, diff)).toEqual([]);
    expect((await call(`${upstreamUrl(sidecar, 'greeter')}/new/x`)).backend).toBe('v2');
    // `fresh` rebound (a new cluster): the unchanged router of greeter follows it, endpoint changes included.
    const v3 = await backend('v3');
    const withFresh = (fresh: RawConfig) =>
      validateConfig({ ...base, upstreams: [{ name: 'greeter', port: 0, endpoints: at(v1), routes: [{ match: { prefix: '/new' }, to: 'fresh' }] }, { name: 'fresh', port: 0, ...fresh }] }, 'test');
    const rebound = withFresh({ endpoints: at(v2), connectionLimit: { maxConnections: 50 } });
    const reboundDiff = diffConfig(sidecar.config, rebound);
    expect(reboundDiff.upstreams).toMatchObject({ rebound: ['fresh'], changed: [] });
    expect(await sidecar.applyConfig(rebound, reboundDiff)).toEqual([]);
    expect((await call(`${upstreamUrl(sidecar, 'greeter')}/new/y`)).backend).toBe('v2');
    const moved = withFresh({ endpoints: at(v3), connectionLimit: { maxConnections: 50 } });
    expect(await sidecar.applyConfig(moved, diffConfig(sidecar.config, moved))).toEqual([]);
    expect((await call(`${upstreamUrl(sidecar, 'greeter')}/new/z`)).backend).toBe('v3');
    expect(() => validateConfig({ ...base, upstreams: [{ name: 'greeter', port: 0, routes: [{ match: {}, to: 'gone' }] }] }, 'meshlet.yaml')).toThrow(
      'upstreams[0].routes[0].to: no upstream named "gone", got "gone" (meshlet.yaml)',
    );
  });
});
