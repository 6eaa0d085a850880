/**
 * Consul discovery end to end: a real sidecar watching the Consul test server (driven with the real npm
 * client), real backends, real requests through the upstream listener.
 */
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../sidecar/telemetry/logger.ts';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startConsulServer, type ConsulTestServer } from '../fixtures/consul-server.ts';
import { npmConsul, registerInstance, type NpmConsul } from '../fixtures/consul-helpers.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

describe('Consul discovery', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function backend(name: string): Promise<TestBackend> {
    const b = await startBackend(name);
    cleanup.push(() => b.close());
    return b;
  }

  async function consulServer(options: Parameters<typeof startConsulServer>[0] = {}): Promise<{ server: ConsulTestServer; consul: NpmConsul }> {
    const server = await startConsulServer(options);
    cleanup.push(() => server.close());
    const consul = npmConsul(server, options.aclTokens ? { defaults: { token: options.aclTokens[0] } } : {});
    cleanup.push(() => consul.destroy());
    return { server, consul };
  }

  async function sidecarFor(server: ConsulTestServer, consulConf: Record<string, unknown> = {}, options: Parameters<typeof startSidecar>[1] = {}): Promise<Sidecar> {
    const sidecar = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter' }],
      discovery: {
        consul: { address: server.address, wait: '30s', backoff: { min: '20ms', max: '100ms' }, registration: { enabled: false }, ...consulConf },
      },
    }, options);
    cleanup.push(() => sidecar.stop());
    return sidecar;
  }

  /** Which backend answered each of `n` calls. */
  async function callers(sidecar: Sidecar, n: number): Promise<string[]> {
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const res = await request(`${upstreamUrl(sidecar, 'greeter')}/`);
      const body = (await res.body.json()) as { backend?: string };
      names.push(res.statusCode === 200 ? body.backend! : `status ${res.statusCode}`);
    }
    return names;
  }

  async function endpointsView(sidecar: Sidecar): Promise<any> {
    const res = await request(`${adminUrl(sidecar)}/endpoints`);
    return res.body.json();
  }

  it('sends traffic to the passing instances Consul lists', async () => {
    const { server, consul } = await consulServer();
    const a = await backend('a');
    const b = await backend('b');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port, meta: { 'spiffe-id': 'spiffe://meshlet.local/ns/default/svc/greeter' } });
    await registerInstance(consul, { name: 'greeter', id: 'g-b', port: b.port });
    const sidecar = await sidecarFor(server);
    await eventually('both endpoints discovered', () => sidecar.clusters.get('greeter')!.endpoints.length === 2);
    expect(new Set(await callers(sidecar, 6))).toEqual(new Set(['a', 'b']));
    const epA = sidecar.registry.endpoints('greeter').find((e) => e.port === a.port)!;
    expect(epA.meta).toMatchObject({ identity: 'spiffe://meshlet.local/ns/default/svc/greeter', 'consul-service-id': 'g-a', 'consul-node': 'meshlet-test-node' });
    const view = await endpointsView(sidecar);
    const provider = view.providers.find((p: { provider: string }) => p.provider === 'consul');
    expect(provider).toMatchObject({ state: 'ok', services: { greeter: { state: 'ok', endpoints: 2 } } });
  });

  it('a new instance registered in the catalog receives traffic within a second, without restart', async () => {
    const { server, consul } = await consulServer();
    const a = await backend('a');
    const b = await backend('b');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port });
    const sidecar = await sidecarFor(server);
    await eventually('first endpoint discovered', () => sidecar.clusters.get('greeter')!.endpoints.length === 1);
    // The watch is parked in a 30 s blocking query: only its immediate wake-up can meet the 1 s bound.
    await eventually('the blocking query to be held', () => server.requestsTo('/v1/health/service/greeter').some((r) => r.query.get('index') !== null && r.status === undefined));
    await registerInstance(consul, { name: 'greeter', id: 'g-b', port: b.port });
    await eventually('the new instance to be in the cluster', () => sidecar.clusters.get('greeter')!.endpoints.length === 2, 1000);
    await eventually('the new instance to receive traffic', async () => (await callers(sidecar, 2)).includes('b'));
  });

  it('an instance whose check turns critical stops receiving traffic', async () => {
    const { server, consul } = await consulServer();
    const a = await backend('a');
    const b = await backend('b');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port });
    const checkB = await registerInstance(consul, { name: 'greeter', id: 'g-b', port: b.port });
    const sidecar = await sidecarFor(server);
    await eventually('both discovered', () => sidecar.clusters.get('greeter')!.endpoints.length === 2);
    await consul.agent.check.fail({ id: checkB, note: 'db down' });
    await eventually('b removed', () => sidecar.clusters.get('greeter')!.endpoints.length === 1);
    b.hits = 0;
    expect(await callers(sidecar, 6)).toEqual(['a', 'a', 'a', 'a', 'a', 'a']);
    expect(b.hits).toBe(0);
    // A warning is not passing either (?passing drops it); back to passing brings b back.
    await consul.agent.check.warn(checkB);
    await consul.agent.check.pass(checkB);
    await eventually('b back', () => sidecar.clusters.get('greeter')!.endpoints.length === 2);
  });

  it('Consul going down keeps traffic flowing to the last known endpoints, and coming back resumes watching', async () => {
    const { server, consul } = await consulServer();
    const a = await backend('a');
    const b = await backend('b');
    const c = await backend('c');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port });
    await registerInstance(consul, { name: 'greeter', id: 'g-b', port: b.port });
    const sidecar = await sidecarFor(server);
    const states: string[] = [];
    sidecar.events.on('discoveryState', (e) => states.push(e.state));
    await eventually('both discovered', () => sidecar.clusters.get('greeter')!.endpoints.length === 2);

    await server.stop();
    await eventually('provider degraded', async () => (await endpointsView(sidecar)).providers.find((p: { provider: string }) => p.provider === 'consul').state === 'degraded');
    const view = await endpointsView(sidecar);
    expect(view.providers.find((p: { provider: string }) => p.provider === 'consul').lastError).toMatch(/ECONNREFUSED|ECONNRESET|socket hang up/);
    expect(view.upstreams.greeter.endpoints).toHaveLength(2);
    expect(new Set(await callers(sidecar, 6))).toEqual(new Set(['a', 'b']));

    await server.start();
    await registerInstance(consul, { name: 'greeter', id: 'g-c', port: c.port });
    await eventually('c discovered after Consul came back', () => sidecar.clusters.get('greeter')!.endpoints.length === 3);
    expect(await callers(sidecar, 9)).toContain('c');
    await eventually('provider ok again', async () => (await endpointsView(sidecar)).providers.find((p: { provider: string }) => p.provider === 'consul').state === 'ok');
    expect(states).toEqual(['ok', 'degraded', 'ok']);
  });

  it('an index going backwards resets the watch to index 0 and keeps applying changes', async () => {
    const { server, consul } = await consulServer({ startIndex: 500n });
    const a = await backend('a');
    const b = await backend('b');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port });
    const sidecar = await sidecarFor(server);
    await eventually('a discovered', () => sidecar.clusters.get('greeter')!.endpoints.length === 1);
    await eventually('blocking on the high index', () => server.requestsTo('/v1/health/service/greeter').some((r) => BigInt(r.query.get('index') ?? '0') > 400n));
    const seen = server.requests.length;
    server.rewindIndex(5n);
    await eventually('a query with index=0 after the rewind', () => server.requests.slice(seen).some((r) => r.query.get('index') === null));
    await eventually('blocking again on the new, lower index', () =>
      server.requests.slice(seen).some((r) => {
        const idx = r.query.get('index');
        return idx !== null && BigInt(idx) > 0n && BigInt(idx) < 400n;
      }),
    );
    expect(sidecar.consul!.provider.status().services.greeter!.index).not.toBe('0');
    await registerInstance(consul, { name: 'greeter', id: 'g-b', port: b.port });
    await eventually('b discovered after the reset', () => sidecar.clusters.get('greeter')!.endpoints.length === 2);
  });

  it('starts while Consul is down, serves, and routes once Consul answers', async () => {
    const { server, consul } = await consulServer();
    const a = await backend('a');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port });
    await server.stop();
    const sidecar = await sidecarFor(server);
    expect(sidecar.state).toBe('serving');
    const ready = await request(`${adminUrl(sidecar)}/ready`);
    expect(ready.statusCode).toBe(200);
    await ready.body.dump();
    const early = await request(`${upstreamUrl(sidecar, 'greeter')}/`);
    expect(early.statusCode).toBe(503);
    await early.body.dump();
    await eventually('provider reports the failure', () => sidecar.consul!.provider.status().state === 'degraded');
    await server.start();
    await eventually('routes once Consul answers', async () => (await callers(sidecar, 1))[0] === 'a');
  });

  it('filters by tag and datacenter, and sends the ACL token', async () => {
    const { server, consul } = await consulServer({ aclTokens: ['t0k3n'] });
    const a = await backend('a');
    const b = await backend('b');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port, tags: ['v1'] });
    await registerInstance(consul, { name: 'greeter', id: 'g-b', port: b.port, tags: ['v2', 'canary'] });
    const sidecar = await sidecarFor(server, { token: 't0k3n', tags: ['V2'], datacenter: 'dc1' });
    await eventually('only the v2 instance', () => sidecar.clusters.get('greeter')!.endpoints.length === 1);
    expect(await callers(sidecar, 3)).toEqual(['b', 'b', 'b']);
    const sent = server.requestsTo('/v1/health/service/greeter')[0]!;
    expect(sent.headers['x-consul-token']).toBe('t0k3n');
    expect(sent.query.getAll('tag')).toEqual(['V2']);
    expect(sent.query.get('dc')).toBe('dc1');
    expect(sent.query.get('passing')).toBe('true');
  });

  it('reports a refused token as degraded with the reason, and CONSUL_HTTP_TOKEN is used when config has none', async () => {
    const { server, consul } = await consulServer({ aclTokens: ['t0k3n'] });
    const a = await backend('a');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port });
    const wrong = await sidecarFor(server, { token: 'nope' });
    await eventually('degraded', () => wrong.consul!.provider.status().state === 'degraded');
    expect(wrong.consul!.provider.status().lastError).toBe('ACL not found (HTTP 403)');
    const config = await request(`${adminUrl(wrong)}/config`);
    expect(JSON.stringify(await config.body.json())).not.toContain('nope');

    const previous = process.env.CONSUL_HTTP_TOKEN;
    process.env.CONSUL_HTTP_TOKEN = 't0k3n';
    cleanup.push(() => {
      if (previous === undefined) delete process.env.CONSUL_HTTP_TOKEN;
      else process.env.CONSUL_HTTP_TOKEN = previous;
    });
    const fromEnv = await sidecarFor(server);
    await eventually('routes with the env token', async () => (await callers(fromEnv, 1))[0] === 'a');
  });

  it('logs a failing Consul once per state change, not once per retry', async () => {
    const { server, consul } = await consulServer();
    const a = await backend('a');
    await registerInstance(consul, { name: 'greeter', id: 'g-a', port: a.port });
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(...String(chunk).split('\n').filter(Boolean));
        done();
      },
    });
    const sidecar = await sidecarFor(server, {}, { log: createLogger('info', sink) });
    await eventually('discovered', () => sidecar.clusters.get('greeter')!.endpoints.length === 1);
    await server.stop();
    await eventually('several failed retries', () => (sidecar.consul!.provider.status().services.greeter!.failures ?? 0) >= 4);
    await server.start();
    await eventually('ok again', () => sidecar.consul!.provider.status().state === 'ok');
    const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs.filter((m) => m === 'consul watch failing; keeping last known endpoints')).toHaveLength(1);
    expect(msgs.filter((m) => m === 'consul discovery degraded')).toHaveLength(1);
    expect(msgs.filter((m) => m === 'consul watch ok')).toHaveLength(2);
    expect(sidecar.consul!.provider.status().services.greeter!.failures).toBeUndefined();
  });

  it('sends the namespace to Consul Enterprise, and reports CE refusing it as degraded', async () => {
    const { server } = await consulServer({ enterprise: true });
    const a = await backend('a');
    const b = await backend('b');
    const team = npmConsul(server, { headers: { 'X-Consul-Namespace': 'team' } });
    cleanup.push(() => team.destroy());
    const plain = npmConsul(server);
    cleanup.push(() => plain.destroy());
    await registerInstance(team, { name: 'greeter', id: 'g-team', port: a.port });
    await registerInstance(plain, { name: 'greeter', id: 'g-default', port: b.port });
    const sidecar = await sidecarFor(server, { namespace: 'team' });
    await eventually('the team instance', () => sidecar.clusters.get('greeter')!.endpoints.length === 1);
    expect(await callers(sidecar, 3)).toEqual(['a', 'a', 'a']);

    const ce = await consulServer();
    const onCe = await sidecarFor(ce.server, { namespace: 'team' });
    await eventually('degraded on CE', () => onCe.consul!.provider.status().state === 'degraded');
    expect(onCe.consul!.provider.status().lastError).toBe('Invalid header: "X-Consul-Namespace" - Namespaces are a Consul Enterprise feature (HTTP 400)');
  });
});
