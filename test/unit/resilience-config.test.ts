import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../sidecar/config/load.ts';
import type { MeshletError } from '../../sidecar/errors.ts';

function problems(upstream: Record<string, unknown>): string[] {
  try {
    validateConfig({ service: { name: 'app', port: 8080 }, upstreams: [{ name: 'api', port: 9001, ...upstream }] }, 'meshlet.yaml');
  } catch (err) {
    return (err as MeshletError & { problems: string[] }).problems;
  }
  return [];
}

describe('resilience config', () => {
  it('turns on retries with a budget, the breaker and outlier detection by default, with the reference defaults', () => {
    const config = validateConfig({ service: { name: 'app', port: 8080 }, upstreams: [{ name: 'api', port: 9001 }] });
    const upstream = config.upstreams[0]!;
    expect(upstream.retries).toMatchObject({ enabled: true, maxAttempts: 3, statuses: [502, 503, 504], backoffBase: 25, perTryTimeout: 0, maxBodyBytes: 65536 });
    expect(upstream.retries.budget).toEqual({ ratio: 0.2, minRetriesPerSecond: 10, window: 10_000 });
    expect(upstream.circuitBreaker).toMatchObject({ enabled: true, maxConnections: 1024, maxPending: 1024, maxRequests: 1024, maxRetries: 3 });
    expect(upstream.outlierDetection).toMatchObject({ enabled: true, consecutiveFailures: 5, baseEjectionTime: 30_000, maxEjectionPercent: 10 });
    expect(upstream.healthCheck).toBeUndefined();
    expect(upstream.rateLimit).toBeUndefined();
  });

  it('parses durations and fills health-check defaults', () => {
    const config = validateConfig({ service: { name: 'app', port: 8080 }, upstreams: [{ name: 'api', port: 9001, healthCheck: { interval: '2s' }, retries: { perTryTimeout: '250ms' } }] });
    expect(config.upstreams[0]!.healthCheck).toEqual({ type: 'http', path: '/health', expectedStatuses: [200], interval: 2000, timeout: 1000, healthyThreshold: 2, unhealthyThreshold: 3 });
    expect(config.upstreams[0]!.retries.perTryTimeout).toBe(250);
  });

  it('names the field of a bad value', () => {
    expect(problems({ retries: { maxAttempts: 0 } })[0]).toMatch(/^upstreams\[0\]\.retries\.maxAttempts: .*got 0 \(meshlet\.yaml\)$/);
    expect(problems({ rateLimit: { requestsPerSecond: 5, key: 'header' } })[0]).toMatch(/^upstreams\[0\]\.rateLimit\.header: key "header" needs `header`/);
    expect(problems({ healthCheck: { path: 'health' } })[0]).toMatch(/^upstreams\[0\]\.healthCheck\.path: expected a path starting with "\/"/);
    expect(problems({ sticky: { cookie: 'bad cookie' } })[0]).toMatch(/^upstreams\[0\]\.sticky\.cookie: expected a cookie name/);
    expect(problems({ balancer: 'fastest' })[0]).toMatch(/^upstreams\[0\]\.balancer: /);
  });

  it('checks rules across fields: hashing needs a key, excludes sticky, and L7 policies need HTTP', () => {
    expect(problems({ balancer: 'ring_hash' })).toEqual(['upstreams[0].hashPolicy: required by balancer ring_hash (header, cookie or source_ip), got nothing (meshlet.yaml)']);
    expect(problems({ hashPolicy: { source: 'source_ip' } })[0]).toMatch(/^upstreams\[0\]\.hashPolicy: only used by the ring_hash and maglev balancers/);
    expect(problems({ balancer: 'maglev', hashPolicy: { source: 'cookie', name: 'session' }, sticky: {} })[0]).toMatch(/^upstreams\[0\]\.sticky: consistent hashing already pins clients/);
    expect(problems({ protocol: 'tcp', rateLimit: { requestsPerSecond: 1 } })).toEqual(['upstreams[0].rateLimit: applies to HTTP upstreams only, got protocol "tcp" (meshlet.yaml)']);
    expect(problems({ balancer: 'ring_hash', hashPolicy: { source: 'header', name: 'x-user' } })).toEqual([]);
  });
});
