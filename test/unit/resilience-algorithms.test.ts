import { describe, expect, it } from 'vitest';
import { EndpointState } from '../../sidecar/cluster/endpoint-state.ts';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';
import { backoffDelay } from '../../sidecar/resilience/backoff.ts';
import { OutlierDetector } from '../../sidecar/resilience/outlier-detector.ts';
import { outlierDetectionSchema } from '../../sidecar/resilience/outlier-config.ts';
import { RetryBudget } from '../../sidecar/resilience/retry-budget.ts';
import { KeyedTokenBuckets, TokenBucket } from '../../sidecar/resilience/token-bucket.ts';

function endpoints(n: number): EndpointState[] {
  return Array.from({ length: n }, (_, i) => new EndpointState(makeEndpoint({ address: '10.0.0.1', port: 8000 + i })));
}

describe('backoff', () => {
  it('grows exponentially with full jitter and caps at 10x the base', () => {
    expect(backoffDelay(1, 25, () => 0.999)).toBe(24);
    expect(backoffDelay(2, 25, () => 0.999)).toBe(49);
    expect(backoffDelay(3, 25, () => 0.999)).toBe(99);
    expect(backoffDelay(10, 25, () => 0.999)).toBe(249);
    expect(backoffDelay(3, 25, () => 0)).toBe(0);
  });
});

describe('RetryBudget', () => {
  it('allows the per-second floor with no traffic, then a ratio of requests', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0.2, minRetriesPerSecond: 1, windowMs: 10_000 }, () => now);
    let allowed = 0;
    while (budget.tryWithdraw()) allowed++;
    expect(allowed).toBe(10);
    for (let i = 0; i < 100; i++) budget.deposit();
    allowed = 0;
    while (budget.tryWithdraw()) allowed++;
    expect(allowed).toBe(20);
    now = 5000;
    expect(budget.tryWithdraw()).toBe(false);
    expect(budget.snapshot()).toEqual({ requests: 100, retries: 30, retriesAllowed: 0 });
    now = 10_500;
    expect(budget.snapshot()).toEqual({ requests: 0, retries: 0, retriesAllowed: 10 });
  });

  it('forgets requests and retries once they leave the window', () => {
    let now = 0;
    const budget = new RetryBudget({ ratio: 0.5, minRetriesPerSecond: 0, windowMs: 1000 }, () => now);
    for (let i = 0; i < 10; i++) budget.deposit();
    for (let i = 0; i < 5; i++) expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
    now = 1100;
    expect(budget.tryWithdraw()).toBe(false);
    for (let i = 0; i < 2; i++) budget.deposit();
    expect(budget.tryWithdraw()).toBe(true);
    expect(budget.tryWithdraw()).toBe(false);
  });
});

describe('TokenBucket', () => {
  it('allows a burst, then the rate, and says how long to wait', () => {
    const bucket = new TokenBucket(2, 3, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([0, 0, 0]);
    expect(bucket.take(0)).toBe(500);
    expect(bucket.take(250)).toBe(250);
    expect(bucket.take(500)).toBe(0);
    expect(bucket.take(10_000)).toBe(0);
    expect(bucket.take(10_000)).toBe(0);
    expect(bucket.take(10_000)).toBe(0);
    expect(bucket.take(10_000)).toBeGreaterThan(0);
  });

  it('keeps one bucket per key and drops the least recently used past the cap', () => {
    const buckets = new KeyedTokenBuckets(1, 1, 2);
    expect(buckets.take('a', 0)).toBe(0);
    expect(buckets.take('a', 0)).toBeGreaterThan(0);
    expect(buckets.take('b', 0)).toBe(0);
    expect(buckets.take('a', 0)).toBeGreaterThan(0);
    expect(buckets.take('c', 0)).toBe(0);
    expect(buckets.size).toBe(2);
    // "b" was least recently used and is gone, so it starts with a full bucket again.
    expect(buckets.take('b', 0)).toBe(0);
  });
});

describe('OutlierDetector', () => {
  const conf = outlierDetectionSchema.parse({ consecutiveFailures: 3, baseEjectionTime: 1000, maxEjectionTime: 2500, maxEjectionPercent: 50, interval: 10_000 });

  it('ejects after N consecutive failures for base x times ejected, capped', () => {
    const all = endpoints(4);
    const d = new OutlierDetector(conf);
    const ep = all[0]!;
    expect(d.failure(ep, all, 0)).toBeUndefined();
    d.success(ep);
    expect(d.failure(ep, all, 0)).toBeUndefined();
    expect(d.failure(ep, all, 0)).toBeUndefined();
    expect(d.failure(ep, all, 0)).toBe(1000);
    expect(ep.isAvailable(999)).toBe(false);
    expect(ep.isAvailable(1000)).toBe(true);
    for (let i = 0; i < 2; i++) d.failure(ep, all, 1000);
    expect(d.failure(ep, all, 1000)).toBe(2000);
    for (let i = 0; i < 2; i++) d.failure(ep, all, 3000);
    expect(d.failure(ep, all, 3000)).toBe(2500);
  });

  it('lowers the multiplier for each interval spent back in', () => {
    const all = endpoints(2);
    const d = new OutlierDetector(conf);
    const ep = all[0]!;
    for (let i = 0; i < 3; i++) d.failure(ep, all, 0);
    for (let i = 0; i < 3; i++) d.failure(ep, all, 1000);
    expect(d.timesEjected(ep)).toBe(2);
    // Returned at 3000; 20 s later the multiplier has decayed from 2 to 0, so this is ejection #1 again.
    for (let i = 0; i < 2; i++) d.failure(ep, all, 23_000);
    expect(d.failure(ep, all, 23_000)).toBe(1000);
  });

  it('caps ejections at the percentage (at least one) and never ejects the last available endpoint', () => {
    const all = endpoints(4);
    const d = new OutlierDetector({ ...conf, maxEjectionPercent: 10 });
    const fail = (ep: EndpointState) => {
      let r: number | undefined;
      for (let i = 0; i < 3; i++) r = d.failure(ep, all, 0);
      return r;
    };
    expect(fail(all[0]!)).toBe(1000);
    expect(fail(all[1]!)).toBeUndefined();

    const two = endpoints(2);
    const d2 = new OutlierDetector({ ...conf, maxEjectionPercent: 100 });
    two[1]!.healthy = false;
    for (let i = 0; i < 5; i++) expect(d2.failure(two[0]!, two, 0)).toBeUndefined();
    expect(two[0]!.ejectedUntil).toBe(0);
  });
});
