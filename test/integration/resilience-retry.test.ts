/**
 * Retries on real sockets against backends that fail on command: recovery from one bad endpoint
 * (503, reset, refused, hang with a per-try timeout), the budget capping a retry storm, idempotency
 * rules for POST, and the request timeout across tries.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { adminUrl, eventually } from '../helpers/sidecar.ts';
import { closedPort, startUpstream, totalHits, type UpstreamFixture } from '../helpers/upstream.ts';

const NO_EJECTION = { outlierDetection: { enabled: false } };

describe('retries', () => {
  let fixture: UpstreamFixture | undefined;
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  for (const mode of [{ kind: 'status', status: 503 }, { kind: 'reset' }] as const) {
    it(`recover from a single endpoint failing with ${mode.kind === 'status' ? '503' : 'connection resets'}`, async () => {
      fixture = await startUpstream(['good', 'bad'], NO_EJECTION);
      fixture.backends[1]!.mode = mode;
      for (let i = 0; i < 20; i++) {
        const res = await fixture.call(`/r${i}`);
        expect(res.status).toBe(200);
        expect(res.body.backend).toBe('good');
      }
      expect(fixture.backends[1]!.hits).toBeGreaterThan(0);
      expect(fixture.events.retry.length).toBe(fixture.backends[1]!.hits);
      expect(fixture.events.retry[0]).toMatchObject({ upstream: 'api', attempt: 2 });
      // Each retried response was read off and its connection released: nothing stays counted in flight.
      const endpoints = fixture.sidecar.clusters.get('api')!.endpoints;
      await eventually('retried responses released', () => endpoints.every((e) => e.active === 0));
    });
  }

  it('recover from an endpoint refusing connections, for POST too (no byte was sent)', async () => {
    fixture = await startUpstream(['good'], NO_EJECTION, [{ address: '127.0.0.1', port: await closedPort() }]);
    for (let i = 0; i < 10; i++) {
      const res = await fixture.call('/items', { method: 'POST', body: JSON.stringify({ i }), headers: { 'content-type': 'application/json' } });
      expect(res.status).toBe(200);
    }
    expect(fixture.backends[0]!.hits).toBe(10);
    expect(fixture.events.retry.some((e) => e.reason === 'upstream_connect')).toBe(true);
  });

  it('do not retry a POST once its bytes reached an endpoint, but do retry a GET', async () => {
    fixture = await startUpstream(['a', 'b'], NO_EJECTION);
    for (const b of fixture.backends) b.mode = { kind: 'reset' };
    const post = await fixture.call('/pay', { method: 'POST', body: 'amount=10' });
    expect(post.status).toBe(502);
    expect(post.headers['x-meshlet-error']).toBe('upstream_reset');
    expect(totalHits(fixture.backends)).toBe(1);
    const get = await fixture.call('/pay');
    expect(get.status).toBe(502);
    expect(totalHits(fixture.backends)).toBe(1 + 3);
  });

  it('never send the retry to the endpoint that just failed when others exist', async () => {
    fixture = await startUpstream(['a', 'b', 'c'], { ...NO_EJECTION, balancer: 'random', retries: { maxAttempts: 2 } });
    fixture.backends[0]!.mode = { kind: 'status', status: 503 };
    for (let i = 0; i < 30; i++) expect((await fixture.call()).status).toBe(200);
    // Every request that hit "a" was retried elsewhere: "a" saw each failing request once.
    expect(fixture.events.retry.length).toBe(fixture.backends[0]!.hits);
  });

  it('abort a hanging attempt at the per-try timeout and retry it elsewhere', async () => {
    fixture = await startUpstream(['hang', 'good'], { ...NO_EJECTION, retries: { perTryTimeout: '150ms' } });
    fixture.backends[0]!.mode = { kind: 'hang' };
    for (let i = 0; i < 4; i++) {
      const res = await fixture.call();
      expect(res.status).toBe(200);
      expect(res.body.backend).toBe('good');
    }
    expect(fixture.backends[0]!.hits).toBeGreaterThan(0);
    expect(fixture.events.retry.every((e) => e.reason === 'upstream_timeout')).toBe(true);
  });

  it('stop at the request timeout across all tries with 504', async () => {
    fixture = await startUpstream(['h1', 'h2'], { ...NO_EJECTION, timeouts: { request: '1s' }, retries: { perTryTimeout: '300ms', maxAttempts: 10, backoffBase: '1ms' } });
    for (const b of fixture.backends) b.mode = { kind: 'hang' };
    const res = await fixture.call();
    expect(res.status).toBe(504);
    expect(res.headers['x-meshlet-error']).toBe('upstream_timeout');
    // Attempts start at about 0, 300, 600 and 900 ms (fewer when a loaded machine fires timers late);
    // the deadline stops the rest of the 10 allowed.
    expect(totalHits(fixture.backends)).toBeGreaterThanOrEqual(1);
    expect(totalHits(fixture.backends)).toBeLessThanOrEqual(4);
  });

  it('keep a retry storm within the budget when every endpoint fails', async () => {
    const budget = { ratio: 0.2, minRetriesPerSecond: 0 };
    fixture = await startUpstream(['a', 'b', 'c'], { ...NO_EJECTION, retries: { maxAttempts: 3, backoffBase: '1ms', budget } });
    for (const b of fixture.backends) b.mode = { kind: 'status', status: 503 };
    const requests = 100;
    for (let i = 0; i < requests; i++) expect((await fixture.call()).status).toBe(503);
    // Unlimited retries would make 300 attempts; the budget allows 20% more than the requests.
    expect(totalHits(fixture.backends)).toBeLessThanOrEqual(requests * 1.2 + 1);
    expect(totalHits(fixture.backends)).toBeGreaterThan(requests * 1.1);
    expect(fixture.events.retryBudgetExhausted.length).toBeGreaterThan(0);
    const admin = (await (await request(`${adminUrl(fixture.sidecar)}/resilience`)).body.json()) as { upstreams: { api: { retryBudget: { requests: number; retries: number } } } };
    expect(admin.upstreams.api.retryBudget).toMatchObject({ requests, retries: totalHits(fixture.backends) - requests });
  });

  it('retry every failure when the budget is generous (the control for the storm test)', async () => {
    fixture = await startUpstream(['a', 'b', 'c'], { ...NO_EJECTION, retries: { maxAttempts: 3, backoffBase: '1ms', budget: { ratio: 5 } } });
    for (const b of fixture.backends) b.mode = { kind: 'status', status: 503 };
    for (let i = 0; i < 30; i++) await fixture.call();
    expect(totalHits(fixture.backends)).toBe(90);
  });

  it('resend a buffered body on retry, and stream (without retrying) a body over maxBodyBytes', async () => {
    fixture = await startUpstream(['a'], { ...NO_EJECTION, retries: { maxBodyBytes: 1024 } }, [{ address: '127.0.0.1', port: await closedPort() }]);
    const small = await fixture.call('/up', { method: 'PUT', body: 'x'.repeat(1000) });
    expect(small.status).toBe(200);
    const hitsBefore = fixture.backends[0]!.hits;
    let large = 0;
    for (let i = 0; i < 4; i++) if ((await fixture.call('/up', { method: 'PUT', body: 'y'.repeat(5000) })).status === 200) large++;
    // Round robin alternates: the attempts that went to the closed port are not retried.
    expect(large).toBeLessThan(4);
    expect(fixture.backends[0]!.hits - hitsBefore).toBe(large);
  });
});
