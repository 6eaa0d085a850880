import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';
import { parseMetrics } from '../fixtures/prometheus-text.ts';

async function scrape(sidecar: Sidecar): Promise<ReturnType<typeof parseMetrics> & { contentType: string }> {
  const res = await request(`${adminUrl(sidecar)}/metrics`);
  expect(res.statusCode).toBe(200);
  return { ...parseMetrics(await res.body.text()), contentType: String(res.headers['content-type']) };
}

describe('Prometheus metrics at admin /metrics (parsed by a Prometheus text parser)', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function mesh(): Promise<{ app: TestBackend; client: Sidecar; server: Sidecar }> {
    const app = await startBackend('app', (req, res) => {
      req.resume();
      res.writeHead(req.url === '/fail' ? 500 : 200, { 'content-type': 'text/plain' }).end('hello');
    });
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'greeter', port: app.port } });
    cleanup.push(() => server.stop());
    const client = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [
        { name: 'greeter', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }] },
        { name: 'nowhere', endpoints: [] },
      ],
    });
    cleanup.push(() => client.stop());
    return { app, client, server };
  }

  async function get(url: string): Promise<number> {
    const res = await request(url);
    await res.body.text();
    return res.statusCode;
  }

  it('counts requests and latency by direction, upstream and status class, and proxy errors by reason', async () => {
    const { client, server } = await mesh();
    for (let i = 0; i < 2; i++) expect(await get(`${upstreamUrl(client, 'greeter')}/ok`)).toBe(200);
    const posted = await request(`${upstreamUrl(client, 'greeter')}/ok`, { method: 'POST', body: 'x'.repeat(256 * 1024) });
    expect(posted.statusCode).toBe(200);
    await posted.body.text();
    for (let i = 0; i < 2; i++) expect(await get(`${upstreamUrl(client, 'greeter')}/fail`)).toBe(500);
    const refused = await request(`${upstreamUrl(client, 'nowhere')}/`);
    await refused.body.text();
    expect(refused.statusCode).toBe(503);
    const reason = String(refused.headers['x-meshlet-error']);

    const c = await scrape(client);
    expect(c.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(c.values.get('meshlet_requests_total{code_class=2xx,direction=outbound,upstream=greeter}')).toBe(3);
    expect(c.values.get('meshlet_requests_total{code_class=5xx,direction=outbound,upstream=greeter}')).toBe(2);
    expect(c.values.get('meshlet_requests_total{code_class=5xx,direction=outbound,upstream=nowhere}')).toBe(1);
    expect(c.values.get('meshlet_request_duration_seconds_count{code_class=2xx,direction=outbound,upstream=greeter}')).toBe(3);
    expect(c.values.get('meshlet_request_duration_seconds_sum{code_class=2xx,direction=outbound,upstream=greeter}')).toBeGreaterThan(0);
    expect(c.values.get('meshlet_request_duration_seconds_bucket{code_class=2xx,direction=outbound,le=+Inf,upstream=greeter}')).toBe(3);
    expect(c.values.get(`meshlet_proxy_errors_total{direction=outbound,reason=${reason},upstream=nowhere}`)).toBe(1);
    // The app's own 500s are not Meshlet's errors.
    expect([...c.values.keys()].filter((k) => k.startsWith('meshlet_proxy_errors_total'))).toHaveLength(1);
    // Counted from the socket once the head is parsed, so the body's first chunk may be missing.
    expect(c.values.get('meshlet_request_received_bytes_total{direction=outbound,upstream=greeter}')).toBeGreaterThan(0);
    expect(c.values.get('meshlet_response_sent_bytes_total{direction=outbound,upstream=greeter}')).toBeGreaterThan(0);
    expect(c.values.get(`meshlet_info{namespace=default,service=frontend}`)).toBe(1);

    const s = await scrape(server);
    expect(s.values.get('meshlet_requests_total{code_class=2xx,direction=inbound,upstream=local}')).toBe(3);
    expect(s.values.get('meshlet_requests_total{code_class=5xx,direction=inbound,upstream=local}')).toBe(2);
    // Registries are per sidecar: the server never saw outbound traffic.
    expect([...s.values.keys()].some((k) => k.startsWith('meshlet_requests_total') && k.includes('direction=outbound'))).toBe(false);
  });

  it('follows Prometheus naming and includes process metrics', async () => {
    const { client } = await mesh();
    await get(`${upstreamUrl(client, 'greeter')}/ok`);
    const { families } = await scrape(client);
    const names = families.map((f) => f.name);
    expect(new Set(names).size).toBe(names.length);
    for (const f of families) {
      expect(f.name).toMatch(/^[a-z_][a-z0-9_]*$/);
      if (f.type === 'COUNTER') expect(f.name).toMatch(/_total$/);
      expect(f.help.length).toBeGreaterThan(0);
    }
    const durations = families.filter((f) => f.name.startsWith('meshlet_') && /duration|expiry/.test(f.name));
    for (const f of durations) expect(f.name).toMatch(/_seconds$/);
    expect(names).toEqual(expect.arrayContaining(['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']));
  });

  it('shows requests and connections in flight while a request hangs', async () => {
    const app = await startBackend('slow');
    app.mode = { kind: 'hang' };
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'greeter', port: app.port } });
    cleanup.push(() => server.stop());
    const controller = new AbortController();
    const pending = request(`http://127.0.0.1:${server.ports.inbound}/hang`, { signal: controller.signal }).catch((err: unknown) => err);
    await eventually('the hanging request reached the app', () => app.hits === 1);
    const during = await scrape(server);
    expect(during.values.get('meshlet_active_requests{direction=inbound,upstream=local}')).toBe(1);
    expect(during.values.get('meshlet_active_connections{direction=inbound,upstream=local}')).toBeGreaterThanOrEqual(1);
    controller.abort();
    await pending;
    await eventually('the request is no longer in flight', async () => (await scrape(server)).values.get('meshlet_active_requests{direction=inbound,upstream=local}') === 0);
  });

  it('reads endpoint state and discovery state at scrape time', async () => {
    const { client, server } = await mesh();
    const key = `127.0.0.1:${server.ports.inbound}`;
    let m = await scrape(client);
    expect(m.values.get('meshlet_endpoints{state=healthy,upstream=greeter}')).toBe(1);
    expect(m.values.get(`meshlet_endpoint_up{endpoint=${key},upstream=greeter}`)).toBe(1);
    expect(m.values.get('meshlet_endpoints{state=healthy,upstream=nowhere}')).toBe(0);
    expect(m.values.get('meshlet_discovery_provider_state{provider=static,state=ok}')).toBe(1);
    expect(m.values.get('meshlet_discovery_provider_state{provider=static,state=degraded}')).toBe(0);

    const state = client.clusters.get('greeter')!.endpoints[0]!;
    state.ejectedUntil = Date.now() + 60_000;
    m = await scrape(client);
    expect(m.values.get('meshlet_endpoints{state=ejected,upstream=greeter}')).toBe(1);
    expect(m.values.get(`meshlet_endpoint_up{endpoint=${key},upstream=greeter}`)).toBe(0);
    state.ejectedUntil = 0;
    state.healthy = false;
    m = await scrape(client);
    expect(m.values.get('meshlet_endpoints{state=unhealthy,upstream=greeter}')).toBe(1);
    expect(m.values.get('meshlet_endpoints{state=healthy,upstream=greeter}')).toBe(0);
  });

  it('counts what features report on the event bus', async () => {
    const { client } = await mesh();
    const { events } = client;
    events.emit('retry', { upstream: 'greeter', attempt: 2, reason: 'upstream_reset' });
    events.emit('retry', { upstream: 'greeter', attempt: 3, reason: 'upstream_reset' });
    events.emit('retryBudgetExhausted', { upstream: 'greeter' });
    events.emit('breakerRejected', { upstream: 'greeter', reason: 'circuit_open' });
    events.emit('outlier', { upstream: 'greeter', endpoint: '10.0.0.1:80', ejected: true, durationMs: 30_000 });
    events.emit('outlier', { upstream: 'greeter', endpoint: '10.0.0.1:80', ejected: false });
    events.emit('endpointHealth', { upstream: 'greeter', endpoint: '10.0.0.1:80', healthy: false });
    events.emit('rateLimited', { scope: 'inbound', key: 'any' });
    events.emit('tlsHandshakeError', { side: 'inbound', peer: '127.0.0.1', error: 'bad certificate' });
    events.emit('authorizationDenied', { source: 'spiffe://mesh/ns/default/sa/x', destination: 'frontend', protocol: 'http' });
    events.emit('discoveryState', { provider: 'consul', state: 'degraded', error: 'connection refused' });
    events.emit('configReload', { source: 'catalog.yaml', ok: false, error: 'bad port' });
    events.emit('configReload', { source: 'catalog.yaml', ok: true });
    const notAfter = new Date(Date.now() + 3600_000);
    events.emit('certificate', { identity: 'spiffe://mesh/ns/default/sa/frontend', notAfter });

    const { values } = await scrape(client);
    expect(values.get('meshlet_retries_total{reason=upstream_reset,upstream=greeter}')).toBe(2);
    expect(values.get('meshlet_retry_budget_exhausted_total{upstream=greeter}')).toBe(1);
    expect(values.get('meshlet_breaker_rejections_total{reason=circuit_open,upstream=greeter}')).toBe(1);
    expect(values.get('meshlet_outlier_ejections_total{upstream=greeter}')).toBe(1);
    expect(values.get('meshlet_health_transitions_total{state=unhealthy,upstream=greeter}')).toBe(1);
    expect(values.get('meshlet_rate_limited_total{scope=inbound}')).toBe(1);
    expect(values.get('meshlet_tls_handshake_errors_total{side=inbound}')).toBe(1);
    expect(values.get('meshlet_authorization_denied_total{protocol=http}')).toBe(1);
    expect(values.get('meshlet_discovery_state_changes_total{provider=consul,state=degraded}')).toBe(1);
    expect(values.get('meshlet_config_reloads_total{result=rejected,source=catalog.yaml}')).toBe(1);
    expect(values.get('meshlet_config_reloads_total{result=ok,source=catalog.yaml}')).toBe(1);
    const expiry = values.get('meshlet_certificate_expiry_seconds{identity=spiffe://mesh/ns/default/sa/frontend}');
    expect(expiry).toBeGreaterThan(3500);
    expect(expiry).toBeLessThanOrEqual(3600);
  });
});
