/**
 * Which endpoint gets a request, on real sockets: outlier detection ejecting an endpoint and letting it
 * back, active health checks taking a dead endpoint out and bringing it back, consistent hashing on a
 * header, and sticky cookies that pin and fall back.
 */
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';
import { request } from 'undici';
import { adminUrl, eventually } from '../helpers/sidecar.ts';
import { closedPort, startUpstream, type UpstreamFixture } from '../helpers/upstream.ts';

describe('endpoint selection', () => {
  let fixture: UpstreamFixture | undefined;
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  /** Makes `n` calls and counts answers by backend name. */
  async function spread(n: number, headers?: Record<string, string>): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const res = await fixture!.call('/', { headers });
      const name = res.body.backend ?? `status ${res.status}`;
      counts[name] = (counts[name] ?? 0) + 1;
    }
    return counts;
  }

  it('ejects an endpoint after N consecutive 5xx and lets it back after the ejection time', async () => {
    fixture = await startUpstream(['good', 'bad'], {
      retries: { enabled: false },
      outlierDetection: { consecutiveFailures: 3, baseEjectionTime: '2s', maxEjectionPercent: 50 },
    });
    const bad = fixture.backends[1]!;
    bad.mode = { kind: 'status', status: 500 };
    await eventually('the bad endpoint is ejected', async () => {
      await fixture!.call();
      return fixture!.events.outlier.length > 0;
    });
    expect(bad.hits).toBe(3);
    expect(fixture.events.outlier[0]).toMatchObject({ upstream: 'api', endpoint: `127.0.0.1:${bad.port}`, ejected: true, durationMs: 2000 });
    expect(await spread(10)).toEqual({ good: 10 });
    expect(bad.hits).toBe(3);
    bad.mode = { kind: 'ok' };
    await once(fixture.sidecar.events, 'outlier');
    expect(fixture.events.outlier[1]).toMatchObject({ ejected: false });
    expect((await spread(10)).bad).toBeGreaterThan(0);
  });

  it('takes an endpoint failing HTTP health checks out and brings it back once it passes', async () => {
    fixture = await startUpstream(['good', 'sick'], {
      retries: { enabled: false },
      healthCheck: { path: '/health', interval: '50ms', timeout: '500ms', unhealthyThreshold: 2, healthyThreshold: 2 },
    });
    const sick = fixture.backends[1]!;
    await eventually('health checks reach both endpoints', () => sick.lastHeaders?.['user-agent'] === 'meshlet-health-check');
    sick.mode = { kind: 'status', status: 503 };
    await eventually('the endpoint is marked unhealthy', () => fixture!.events.endpointHealth.length === 1);
    expect(fixture.events.endpointHealth[0]).toEqual({ upstream: 'api', endpoint: `127.0.0.1:${sick.port}`, healthy: false });
    expect(await spread(10)).toEqual({ good: 10 });
    const admin = (await (await request(`${adminUrl(fixture.sidecar)}/resilience`)).body.json()) as { upstreams: { api: { healthCheck: Array<{ endpoint: string; healthy: boolean; lastFailure?: string }> } } };
    expect(admin.upstreams.api.healthCheck).toContainEqual(expect.objectContaining({ endpoint: `127.0.0.1:${sick.port}`, healthy: false, lastFailure: 'status 503' }));
    sick.mode = { kind: 'ok' };
    await eventually('the endpoint is healthy again', () => fixture!.events.endpointHealth.length === 2);
    expect(fixture.events.endpointHealth[1]).toMatchObject({ healthy: true });
    expect((await spread(10)).sick).toBeGreaterThan(0);
  });

  it('starts health checks with the sidecar and stops them when it drains', async () => {
    fixture = await startUpstream(['svc'], { healthCheck: { interval: '20ms' } });
    const svc = fixture.backends[0]!;
    await eventually('checks run', () => svc.hits >= 3);
    await fixture.sidecar.stop();
    const afterStop = svc.hits;
    // Another sidecar's checks at the same pace prove time passed for several intervals.
    const witness = await startUpstream(['witness'], { healthCheck: { interval: '20ms' } });
    await eventually('the witness saw several checks', () => witness.backends[0]!.hits >= 5);
    await witness.close();
    // A check already written when stop aborted it may still reach the backend after stop resolved; no more than that one.
    expect(svc.hits).toBeLessThanOrEqual(afterStop + 1);
  });

  it('marks an endpoint that refuses TCP health-check connections unhealthy', async () => {
    const dead = await closedPort();
    fixture = await startUpstream(['good'], { retries: { enabled: false }, healthCheck: { type: 'tcp', interval: '50ms', unhealthyThreshold: 1 } }, [{ address: '127.0.0.1', port: dead }]);
    await eventually('the dead endpoint is marked unhealthy', () => fixture!.events.endpointHealth.length === 1);
    expect(fixture.events.endpointHealth[0]).toEqual({ upstream: 'api', endpoint: `127.0.0.1:${dead}`, healthy: false });
    expect(await spread(6)).toEqual({ good: 6 });
  });

  it('p2c_ewma steers traffic away from a slow endpoint', async () => {
    fixture = await startUpstream(['fast', 'slow'], { balancer: 'p2c_ewma' });
    // Far slower than any hiccup of a loaded machine, which a peak EWMA would otherwise take at face value.
    fixture.backends[1]!.mode = { kind: 'slow', delayMs: 400 };
    const counts = await spread(30);
    // Round robin would give 15 each.
    expect(counts.fast).toBeGreaterThanOrEqual(25);
  });

  for (const balancer of ['ring_hash', 'maglev']) {
    it(`${balancer} sends each value of the hash header to one endpoint`, async () => {
      fixture = await startUpstream(['a', 'b', 'c', 'd'], { balancer, hashPolicy: { source: 'header', name: 'x-user' } });
      const owners = new Set<string>();
      for (let user = 0; user < 12; user++) {
        const counts = await spread(4, { 'x-user': `user-${user}` });
        expect(Object.values(counts)).toEqual([4]);
        owners.add(Object.keys(counts)[0]!);
      }
      expect(owners.size).toBeGreaterThan(1);
    });
  }

  it('pins a client with a sticky cookie and re-pins it when the pinned endpoint is gone', async () => {
    fixture = await startUpstream(['a', 'b', 'c'], { sticky: { cookie: 'srv' } });
    const first = await fixture.call();
    const setCookie = String(first.headers['set-cookie']);
    expect(setCookie).toMatch(/^srv=[0-9a-z]+; Path=\/; HttpOnly; SameSite=Lax$/);
    const cookie = setCookie.split(';')[0]!;
    const pinnedTo = first.body.backend!;
    const repeat = await Promise.all(Array.from({ length: 9 }, () => fixture!.call('/', { headers: { cookie } })));
    for (const res of repeat) {
      expect(res.body.backend).toBe(pinnedTo);
      expect(res.headers['set-cookie']).toBeUndefined();
    }
    // The pinned endpoint leaves discovery: the client lands elsewhere and is re-pinned there.
    const cluster = fixture.sidecar.clusters.get('api')!;
    const remaining = fixture.backends.filter((b) => b.name !== pinnedTo);
    cluster.setEndpoints(remaining.map((b) => makeEndpoint({ address: '127.0.0.1', port: b.port })));
    const moved = await fixture.call('/', { headers: { cookie } });
    expect(moved.status).toBe(200);
    expect(moved.body.backend).not.toBe(pinnedTo);
    const newCookie = String(moved.headers['set-cookie']).split(';')[0]!;
    expect(newCookie).not.toBe(cookie);
    for (let i = 0; i < 5; i++) expect((await fixture.call('/', { headers: { cookie: newCookie } })).body.backend).toBe(moved.body.backend);
  });

  it('moves a sticky client off its endpoint when that endpoint fails (retry avoids it)', async () => {
    fixture = await startUpstream(['a', 'b'], { sticky: {}, outlierDetection: { enabled: false } });
    const first = await fixture.call();
    const cookie = String(first.headers['set-cookie']).split(';')[0]!;
    const pinned = fixture.backends.find((b) => b.name === first.body.backend)!;
    pinned.mode = { kind: 'status', status: 503 };
    const res = await fixture.call('/', { headers: { cookie } });
    expect(res.status).toBe(200);
    expect(res.body.backend).not.toBe(pinned.name);
    expect(String(res.headers['set-cookie'])).toMatch(/^meshlet-sticky=/);
  });
});
