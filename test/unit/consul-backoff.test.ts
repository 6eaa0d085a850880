import { describe, expect, it } from 'vitest';
import { ExponentialBackoff, TokenBucket } from '../../sidecar/discovery/consul-backoff.ts';

describe('ExponentialBackoff', () => {
  it('doubles per failure up to the cap, keeping half of each step fixed and jittering the rest', () => {
    const low = new ExponentialBackoff(100, 1000, () => 0);
    expect([low.next(), low.next(), low.next(), low.next(), low.next(), low.next()]).toEqual([50, 100, 200, 400, 500, 500]);
    const high = new ExponentialBackoff(100, 1000, () => 1);
    expect([high.next(), high.next(), high.next(), high.next(), high.next()]).toEqual([100, 200, 400, 800, 1000]);
    const mid = new ExponentialBackoff(100, 1000, () => 0.5);
    expect(mid.next()).toBe(75);
  });

  it('starts over from min after a success', () => {
    const backoff = new ExponentialBackoff(100, 10_000, () => 1);
    backoff.next();
    backoff.next();
    backoff.next();
    expect(backoff.failures).toBe(3);
    backoff.reset();
    expect(backoff.failures).toBe(0);
    expect(backoff.next()).toBe(100);
  });

  it('stays capped after very many failures (no overflow to Infinity or NaN)', () => {
    const backoff = new ExponentialBackoff(200, 30_000, () => 1);
    let last = 0;
    for (let i = 0; i < 2000; i++) last = backoff.next();
    expect(last).toBe(30_000);
  });

  it('refuses a nonsensical range', () => {
    expect(() => new ExponentialBackoff(0, 10)).toThrow(RangeError);
    expect(() => new ExponentialBackoff(100, 10)).toThrow('0 < min <= max');
  });
});

describe('TokenBucket', () => {
  it('allows a burst, then one call per interval', () => {
    let now = 1000;
    const bucket = new TokenBucket(3, 200, () => now);
    expect([bucket.take(), bucket.take(), bucket.take()]).toEqual([0, 0, 0]);
    expect(bucket.take()).toBe(200);
    now += 100;
    expect(bucket.take()).toBe(100);
    now += 100;
    expect(bucket.take()).toBe(0);
    expect(bucket.take()).toBe(200);
  });

  it('refills to the burst size at most, however long it was idle', () => {
    let now = 0;
    const bucket = new TokenBucket(2, 100, () => now);
    now += 60_000;
    expect([bucket.take(), bucket.take()]).toEqual([0, 0]);
    expect(bucket.take()).toBe(100);
  });

  it('ignores a clock that goes backwards', () => {
    let now = 10_000;
    const bucket = new TokenBucket(1, 100, () => now);
    expect(bucket.take()).toBe(0);
    now -= 5000;
    expect(bucket.take()).toBe(100);
  });
});
