/** The Consul test server follows Consul's documented API semantics, driven by the real npm client. */
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startConsulServer, type ConsulTestServer } from '../fixtures/consul-server.ts';
import { npmConsul, registerInstance, type NpmConsul } from '../fixtures/consul-helpers.ts';
import { parseGoDuration } from '../fixtures/consul-wire.ts';
import { eventually } from '../helpers/sidecar.ts';

describe('Consul test server', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function setup(options: Parameters<typeof startConsulServer>[0] = {}, clientOptions: Record<string, unknown> = {}): Promise<{ server: ConsulTestServer; consul: NpmConsul }> {
    const server = await startConsulServer(options);
    cleanup.push(() => server.close());
    const consul = npmConsul(server, clientOptions);
    cleanup.push(() => consul.destroy());
    return { server, consul };
  }

  const withResponse = () => Object.assign(new EventEmitter(), { includeResponse: true });

  it('parses Go durations like Consul and refuses ones without a unit', () => {
    expect(parseGoDuration('10s')).toBe(10_000);
    expect(parseGoDuration('1m30s')).toBe(90_000);
    expect(parseGoDuration('250ms')).toBe(250);
    expect(parseGoDuration('1.5h')).toBe(5_400_000);
    expect(parseGoDuration('10')).toBeUndefined();
    expect(parseGoDuration('s')).toBeUndefined();
  });

  it('answers health/service with X-Consul-Index (never 0), leader headers and the documented entry shape', async () => {
    const { consul } = await setup();
    await registerInstance(consul, { name: 'web', id: 'web-1', port: 8080, tags: ['v1'], meta: { zone: 'a' } });
    const [res, body] = await consul.health.service({ service: 'web', passing: true, ctx: withResponse() });
    expect(Number(res.headers['x-consul-index'])).toBeGreaterThan(0);
    expect(res.headers['x-consul-knownleader']).toBe('true');
    expect(res.headers['x-consul-lastcontact']).toBe('0');
    expect(body).toHaveLength(1);
    expect(body[0].Service).toMatchObject({ ID: 'web-1', Service: 'web', Port: 8080, Address: '127.0.0.1', Tags: ['v1'], Meta: { zone: 'a' }, Weights: { Passing: 1, Warning: 1 } });
    expect(body[0].Node).toMatchObject({ Node: 'meshlet-test-node', Address: '127.0.0.1', Datacenter: 'dc1' });
    expect(body[0].Checks.map((c: { CheckID: string }) => c.CheckID)).toEqual(['serfHealth', 'service:web-1']);
    const [unknownRes, unknown] = await consul.health.service({ service: 'nope', ctx: withResponse() });
    expect(unknown).toEqual([]);
    expect(Number(unknownRes.headers['x-consul-index'])).toBeGreaterThanOrEqual(1);
  });

  it('filters with passing (any non-passing check removes the entry), tag (AND, case-insensitive) and dc', async () => {
    const { server, consul } = await setup();
    await registerInstance(consul, { name: 'web', id: 'a', port: 1, tags: ['v1', 'Blue'] });
    await registerInstance(consul, { name: 'web', id: 'b', port: 2, tags: ['v1'], status: 'warning' });
    await registerInstance(consul, { name: 'web', id: 'c', port: 3, tags: ['v2'] });
    const ids = (entries: Array<{ Service: { ID: string } }>) => entries.map((e) => e.Service.ID);
    expect(ids(await consul.health.service({ service: 'web' }))).toEqual(['a', 'b', 'c']);
    expect(ids(await consul.health.service({ service: 'web', passing: true }))).toEqual(['a', 'c']);
    expect(ids(await consul.health.service({ service: 'web', tag: ['v1', 'blue'] }))).toEqual(['a']);
    expect(ids(await consul.health.service({ service: 'web', dc: 'dc1', passing: true }))).toEqual(['a', 'c']);
    await expect(consul.health.service({ service: 'web', dc: 'dc9' })).rejects.toThrow('No path to datacenter');
    server.setNodeHealth('critical');
    expect(ids(await consul.health.service({ service: 'web', passing: true }))).toEqual([]);
  });

  it('holds a blocking query until the service changes, then answers with a higher index', async () => {
    const { server, consul } = await setup();
    await registerInstance(consul, { name: 'web', id: 'a', port: 1 });
    const [first] = await consul.health.service({ service: 'web', ctx: withResponse() });
    const index = first.headers['x-consul-index'];
    const held = consul.health.service({ service: 'web', index, wait: '30s', ctx: withResponse() });
    await eventually('the blocking query to arrive', () => server.requestsTo('/v1/health/service/web').length === 2);
    let settled = false;
    void held.then(() => (settled = true));
    // A change to another service must not release it.
    await registerInstance(consul, { name: 'other', id: 'o', port: 9 });
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    await registerInstance(consul, { name: 'web', id: 'b', port: 2 });
    const [res, body] = await held;
    expect(BigInt(res.headers['x-consul-index'])).toBeGreaterThan(BigInt(index));
    expect(body).toHaveLength(2);
  });

  it('answers a blocking query with the same index once wait (plus jitter up to wait/16) elapses', async () => {
    const { consul } = await setup();
    await registerInstance(consul, { name: 'web', id: 'a', port: 1 });
    const [first] = await consul.health.service({ service: 'web', ctx: withResponse() });
    const index = first.headers['x-consul-index'];
    const [res, body] = await consul.health.service({ service: 'web', index, wait: '200ms', ctx: withResponse() });
    expect(res.headers['x-consul-index']).toBe(index);
    expect(body).toHaveLength(1);
  });

  it('refuses a bad index or wait with 400 as Consul does', async () => {
    const { server } = await setup();
    const base = `http://127.0.0.1:${server.port}/v1/health/service/web`;
    const bad = await request(`${base}?index=abc`);
    expect(bad.statusCode).toBe(400);
    expect(await bad.body.text()).toBe('Invalid index');
    const badWait = await request(`${base}?index=5&wait=10`);
    expect(badWait.statusCode).toBe(400);
    expect(await badWait.body.text()).toBe('Invalid wait time');
  });

  it('validates registrations like Consul: unknown fields, missing name, bad address, bad checks', async () => {
    const { server, consul } = await setup();
    const put = (body: unknown) => request(`http://127.0.0.1:${server.port}/v1/agent/service/register`, { method: 'PUT', body: JSON.stringify(body) });
    const unknown = await put({ Name: 'web', Bogus: 1 });
    expect([unknown.statusCode, await unknown.body.text()]).toEqual([400, 'Request decode failed: json: unknown field "Bogus"']);
    await expect(consul.agent.service.register({ name: 'web', address: '0.0.0.0', port: 1 })).rejects.toThrow('Invalid service address');
    const noName = await put({ Port: 1 });
    expect(await noName.body.text()).toBe('Missing service name');
    const both = await put({ Name: 'web', Check: { HTTP: 'http://x/', Interval: '10s', TTL: '10s' } });
    expect(await both.body.text()).toBe('Invalid check: Interval and TTL cannot both be specified');
    const noInterval = await put({ Name: 'web', Check: { HTTP: 'http://x/' } });
    expect(await noInterval.body.text()).toBe('Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks');
    const meta = await put({ Name: 'web', Meta: { 'consul-x': 'y' } });
    expect(meta.statusCode).toBe(400);
    const snake = await put({ name: 'web', id: 'w1', port: 7, enable_tag_override: true });
    expect(snake.statusCode).toBe(200);
    expect(server.service('w1')?.def.port).toBe(7);
  });

  it('starts checks critical, keeps their status on re-registration, and expires TTL checks', async () => {
    const { server, consul } = await setup();
    await consul.agent.service.register({ name: 'web', id: 'w', port: 1, check: { ttl: '300ms' } });
    expect(server.catalog.checks.get('service:w')?.status).toBe('critical');
    await consul.agent.check.pass('service:w');
    expect(server.catalog.checks.get('service:w')?.status).toBe('passing');
    await consul.agent.service.register({ name: 'web', id: 'w', port: 2, check: { ttl: '300ms' } });
    expect(server.catalog.checks.get('service:w')?.status).toBe('passing');
    await eventually('the TTL to expire', () => server.catalog.checks.get('service:w')?.status === 'critical');
    expect(server.catalog.checks.get('service:w')?.output).toBe('TTL expired');
  });

  it('runs HTTP checks: 2xx passing, 429 warning, other critical', async () => {
    const { server, consul } = await setup();
    let status = 200;
    const { createServer } = await import('node:http');
    const target = createServer((_req, res) => res.writeHead(status).end('ok'));
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise<void>((r) => target.close(() => r())));
    const url = `http://127.0.0.1:${(target.address() as { port: number }).port}/ready`;
    await consul.agent.service.register({ name: 'web', id: 'w', port: 1, check: { http: url, interval: '50ms' } });
    await eventually('check passing', () => server.catalog.checks.get('service:w')?.status === 'passing');
    status = 429;
    await eventually('check warning', () => server.catalog.checks.get('service:w')?.status === 'warning');
    status = 503;
    await eventually('check critical', () => server.catalog.checks.get('service:w')?.status === 'critical');
  });

  it('deregisters, answering 404 for an unknown service ID and check ID', async () => {
    const { server, consul } = await setup();
    await registerInstance(consul, { name: 'web', id: 'w', port: 1 });
    await consul.agent.service.deregister('w');
    expect(server.service('w')).toBeUndefined();
    expect(server.catalog.checks.has('service:w')).toBe(false);
    const err = await consul.agent.service.deregister({ id: 'w', ctx: withResponse() }).catch((e: unknown) => e);
    expect((err as { response: { statusCode: number } }).response.statusCode).toBe(404);
    await expect(consul.agent.check.pass('nope')).rejects.toThrow('not found');
  });

  it('refuses wrong methods with 405 and an Allow header', async () => {
    const { server } = await setup();
    const res = await request(`http://127.0.0.1:${server.port}/v1/agent/check/pass/x`);
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe('OPTIONS,PUT');
    expect(await res.body.text()).toBe('method GET not allowed');
  });

  it('checks ACL tokens from X-Consul-Token and Authorization: Bearer', async () => {
    const { server, consul } = await setup({ aclTokens: ['s3cret'] });
    const ok = npmConsul(server, { defaults: { token: 's3cret' } });
    cleanup.push(() => ok.destroy());
    await registerInstance(ok, { name: 'web', id: 'w', port: 1 });
    await expect(registerInstance(consul, { name: 'web', id: 'x', port: 1 })).rejects.toThrow('Permission denied');
    expect(await consul.health.service('web')).toEqual([]);
    await expect(consul.health.service({ service: 'web', token: 'wrong' })).rejects.toThrow('ACL not found');
    expect(await ok.health.service('web')).toHaveLength(1);
    const bearer = await request(`http://127.0.0.1:${server.port}/v1/health/service/web`, { headers: { authorization: 'Bearer s3cret' } });
    expect(await bearer.body.json()).toHaveLength(1);
  });

  it('refuses namespaces as Consul CE does', async () => {
    const { server } = await setup();
    const res = await request(`http://127.0.0.1:${server.port}/v1/health/service/web?ns=team`);
    expect(res.statusCode).toBe(400);
    expect(await res.body.text()).toBe('Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature');
  });

  it('goes backwards on rewindIndex and wakes blocked queries; the npm watch resets to index 0', async () => {
    const { server, consul } = await setup({ startIndex: 100n });
    await registerInstance(consul, { name: 'web', id: 'a', port: 1 });
    const watch = consul.watch({ method: consul.health.service, options: { service: 'web', wait: '30s' } });
    cleanup.push(() => watch.end());
    const changes: number[] = [];
    watch.on('change', (_data: unknown, res: { headers: Record<string, string> }) => changes.push(Number(res.headers['x-consul-index'])));
    watch.on('error', () => {});
    await eventually('the first answer', () => changes.length === 1);
    server.rewindIndex(3n);
    await eventually('a change with a lower index', () => changes.length >= 2 && changes.at(-1)! < changes[0]!);
    await eventually('a query sent with index 0 after the reset', () => server.requestsTo('/v1/health/service/web').slice(2).some((r) => r.query.get('index') === '0'));
  });

  it('drops held queries and refuses connections while stopped, and comes back on the same port', async () => {
    const { server, consul } = await setup();
    const port = server.port;
    await registerInstance(consul, { name: 'web', id: 'a', port: 1 });
    const [first] = await consul.health.service({ service: 'web', ctx: withResponse() });
    const held = consul.health.service({ service: 'web', index: first.headers['x-consul-index'], wait: '30s' });
    await eventually('the blocking query to arrive', () => server.requestsTo('/v1/health/service/web').length === 2);
    await server.stop();
    await expect(held).rejects.toThrow();
    await expect(consul.health.service('web')).rejects.toThrow(/ECONNREFUSED|socket hang up|ECONNRESET/);
    await server.start();
    expect(server.port).toBe(port);
    expect(await consul.health.service('web')).toHaveLength(1);
  });
});
