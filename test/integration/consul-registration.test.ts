/** A sidecar registers its instance with the Consul agent, keeps it healthy, and leaves before draining. */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startConsulServer, type ConsulTestServer } from '../fixtures/consul-server.ts';
import { startBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar } from '../helpers/sidecar.ts';

describe('Consul registration', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function consulServer(): Promise<ConsulTestServer> {
    const server = await startConsulServer();
    cleanup.push(() => server.close());
    return server;
  }

  async function sidecarFor(server: ConsulTestServer, registration: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<Sidecar> {
    const sidecar = await startSidecar({
      service: { name: 'greeter', namespace: 'shop', port: 1, tags: ['v1', 'http'] },
      discovery: { consul: { address: server.address, backoff: { min: '20ms', max: '100ms' }, registration } },
      ...extra,
    });
    cleanup.push(() => sidecar.stop());
    return sidecar;
  }

  const registerCalls = (server: ConsulTestServer) => server.requestsTo('/v1/agent/service/register');

  it('registers name, unique id, address, inbound port, tags, meta and an HTTP check on /ready, as Consul expects', async () => {
    const server = await consulServer();
    const sidecar = await sidecarFor(server, { address: '127.0.0.1', check: { interval: '50ms', timeout: '1s', deregisterCriticalAfter: '2m' } });
    await eventually('registered', () => registerCalls(server).some((r) => r.status === 200));
    const id = sidecar.consul!.registration!.registration.id;
    expect(id).toMatch(new RegExp(`^greeter-.+-${sidecar.ports.inbound}$`));
    const body = JSON.parse(registerCalls(server)[0]!.body);
    expect(body).toEqual({
      Name: 'greeter',
      ID: id,
      Address: '127.0.0.1',
      Port: sidecar.ports.inbound,
      Tags: ['v1', 'http'],
      Meta: { 'spiffe-id': 'spiffe://meshlet.local/ns/shop/svc/greeter', 'meshlet-inbound-port': String(sidecar.ports.inbound), 'meshlet-version': expect.stringMatching(/^\d+\.\d+\.\d+/) },
      Check: {
        CheckID: `service:${id}`,
        Name: 'Meshlet sidecar ready',
        HTTP: `http://127.0.0.1:${sidecar.ports.admin}/ready`,
        Method: 'GET',
        Interval: '50ms',
        Timeout: '1000ms',
        DeregisterCriticalServiceAfter: '120000ms',
      },
    });
    // The agent accepted it and its HTTP check against the sidecar's /ready passes.
    await eventually('check passing', () => server.catalog.checks.get(`service:${id}`)?.status === 'passing');
    expect(server.catalog.checks.get(`service:${id}`)?.output).toContain('200 OK');
  });

  it('leaves Address out when inbound listens on 0.0.0.0 (Consul refuses it; the agent address is used)', async () => {
    const server = await consulServer();
    const sidecar = await sidecarFor(server, {}, { inbound: { address: '0.0.0.0', port: 0 } });
    await eventually('registered', () => registerCalls(server).some((r) => r.status === 200));
    const body = JSON.parse(registerCalls(server)[0]!.body);
    expect(body).not.toHaveProperty('Address');
    expect(server.service(sidecar.consul!.registration!.registration.id)?.def.port).toBe(sidecar.ports.inbound);
  });

  it('TTL check: reports passing right away and keeps it passing; registers again when the agent forgot it', async () => {
    const server = await consulServer();
    const sidecar = await sidecarFor(server, { id: 'greeter-1', check: { kind: 'ttl', ttl: '900ms' } });
    await eventually('check passing', () => server.catalog.checks.get('service:greeter-1')?.status === 'passing');
    const body = JSON.parse(registerCalls(server)[0]!.body);
    expect(body.Check).toEqual({ CheckID: 'service:greeter-1', Name: 'Meshlet sidecar ready', TTL: '900ms', Notes: 'Meshlet reports passing while it serves' });
    // Several heartbeats (every ttl/3), and the TTL never lapsed in between.
    let lapsed = false;
    server.catalog.on('change', () => {
      if (server.catalog.checks.get('service:greeter-1')?.status === 'critical') lapsed = true;
    });
    await eventually('three heartbeats', () => server.requestsTo('/v1/agent/check/pass/service:greeter-1').length >= 4);
    expect(lapsed).toBe(false);
    // Agent restart: registration gone; the next heartbeat gets 404 and the sidecar registers again.
    server.catalog.deregister('greeter-1');
    await eventually('registered again', () => server.service('greeter-1') !== undefined && registerCalls(server).length >= 2);
    await eventually('passing again', () => server.catalog.checks.get('service:greeter-1')?.status === 'passing');
    expect(sidecar.consul!.registration!.status().state).toBe('registered');
  });

  it('registers once Consul comes up when it was down at start, without blocking the sidecar', async () => {
    const server = await consulServer();
    await server.stop();
    const sidecar = await sidecarFor(server, { id: 'greeter-late' });
    expect(sidecar.state).toBe('serving');
    await eventually('registration failing', () => sidecar.consul!.registration!.status().state === 'failing');
    const view = (await (await request(`${adminUrl(sidecar)}/endpoints`)).body.json()) as { providers: Array<{ provider: string; registration?: { state: string } }> };
    expect(view.providers.find((p) => p.provider === 'consul')?.registration?.state).toBe('failing');
    await server.start();
    await eventually('registered after Consul came up', () => server.service('greeter-late') !== undefined);
  });

  it('deregisters on shutdown before draining: in-flight inbound requests are still running when Consul hears of it', async () => {
    const server = await consulServer();
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    app.mode = { kind: 'slow', delayMs: 400 };
    const sidecar = await startSidecar({
      service: { name: 'greeter', port: app.port },
      discovery: { consul: { address: server.address, registration: { id: 'greeter-drain' } } },
    });
    cleanup.push(() => sidecar.stop());
    await eventually('registered', () => server.service('greeter-drain') !== undefined);
    let finished = false;
    const inflight = request(`http://127.0.0.1:${sidecar.ports.inbound}/slow`).then(async (res) => {
      await res.body.dump();
      finished = true;
      return res.statusCode;
    });
    await eventually('request at the app', () => app.hits === 1);
    const deregistered = new Promise<boolean>((resolve) =>
      server.on('response', (r) => {
        if (r.path === '/v1/agent/service/deregister/greeter-drain') resolve(finished);
      }),
    );
    const stopping = sidecar.stop();
    expect(await deregistered).toBe(false);
    expect(server.service('greeter-drain')).toBeUndefined();
    expect(await inflight).toBe(200);
    await stopping;
  });
});
