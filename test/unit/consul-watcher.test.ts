/** The blocking-query loop under fake time with a scripted Consul: index rules, pacing, backoff, stop. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ExponentialBackoff, TokenBucket } from '../../sidecar/discovery/consul-backoff.ts';
import type { HealthQueryResult } from '../../sidecar/discovery/consul-client.ts';
import { nextIndex, ServiceWatcher, type HealthQuery } from '../../sidecar/discovery/consul-watcher.ts';

const result = (index: bigint | undefined, n = 1): HealthQueryResult => ({
  index,
  entries: Array.from({ length: n }, (_, i) => ({ Service: { ID: `s${i}`, Port: 1000 + i, Address: '10.0.0.1' } })),
  knownLeader: true,
  lastContactMs: 0,
});

/** A Consul whose answers the test scripts one by one; records the index of every query. */
function scriptedConsul(answers: Array<HealthQueryResult | Error>) {
  const sent: bigint[] = [];
  const query: HealthQuery = (index, signal) => {
    sent.push(index);
    const next = answers.shift();
    if (next === undefined) {
      // Parked like a blocking query until stopped.
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    }
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  };
  return { sent, query };
}

function watcher(query: HealthQuery, opts: { burst?: number; intervalMs?: number } = {}) {
  const results: HealthQueryResult[] = [];
  const errors: Array<{ err: unknown; retryInMs: number }> = [];
  const w = new ServiceWatcher({
    service: 'web',
    query,
    backoff: new ExponentialBackoff(100, 800, () => 1),
    bucket: new TokenBucket(opts.burst ?? 100, opts.intervalMs ?? 0),
    onResult: (r) => results.push(r),
    onError: (err, retryInMs) => errors.push({ err, retryInMs }),
  });
  return { w, results, errors };
}

describe('nextIndex (Consul blocking-query client rules)', () => {
  it('moves forward with Consul, resets to 0 when the index goes backwards, and never blocks below 1', () => {
    expect(nextIndex(0n, 42n)).toBe(42n);
    expect(nextIndex(42n, 42n)).toBe(42n);
    expect(nextIndex(42n, 50n)).toBe(50n);
    expect(nextIndex(50n, 7n)).toBe(0n);
    expect(nextIndex(0n, 0n)).toBe(1n);
    expect(nextIndex(1n, 0n)).toBe(0n);
  });
});

describe('ServiceWatcher', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends index 0 first, then blocks on the returned index, and resets to 0 after the index went backwards', async () => {
    const { sent, query } = scriptedConsul([result(10n), result(12n), result(3n), result(4n)]);
    const { w, results } = watcher(query);
    w.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toEqual([0n, 10n, 12n, 0n, 4n]);
    expect(results.map((r) => r.index)).toEqual([10n, 12n, 3n, 4n]);
    expect(w.index).toBe(4n);
    await w.stop();
  });

  it('treats an answer without X-Consul-Index as a failure, and re-reads without blocking after it', async () => {
    const { sent, query } = scriptedConsul([result(10n), result(undefined), result(11n)]);
    const { w, errors, results } = watcher(query);
    w.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toHaveLength(1);
    expect(String(errors[0]!.err)).toContain('X-Consul-Index');
    expect(results).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(errors[0]!.retryInMs);
    expect(sent).toEqual([0n, 10n, 0n, 11n]);
    expect(w.index).toBe(11n);
    await w.stop();
  });

  it('backs off exponentially (capped) while Consul fails, re-reads without blocking, and starts over after a success', async () => {
    const down = () => new Error('connect ECONNREFUSED');
    const { sent, query } = scriptedConsul([result(5n), down(), down(), down(), down(), down(), result(6n), down()]);
    const { w, errors } = watcher(query);
    w.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(errors.map((e) => e.retryInMs)).toEqual([100]);
    await vi.advanceTimersByTimeAsync(99);
    expect(sent).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(errors.map((e) => e.retryInMs)).toEqual([100, 200]);
    await vi.advanceTimersByTimeAsync(200 + 400 + 800);
    expect(errors.map((e) => e.retryInMs)).toEqual([100, 200, 400, 800, 800]);
    await vi.advanceTimersByTimeAsync(800);
    // Success (index 6) reset the backoff: the next failure waits the minimum again.
    expect(errors.map((e) => e.retryInMs)).toEqual([100, 200, 400, 800, 800, 100]);
    expect(sent).toEqual([0n, 5n, 0n, 0n, 0n, 0n, 0n, 6n]);
    await w.stop();
  });

  it('rate-limits a loop that Consul answers at once, instead of spinning', async () => {
    const same = Array.from({ length: 20 }, () => result(7n));
    const { sent, query } = scriptedConsul(same);
    const { w } = watcher(query, { burst: 3, intervalMs: 1000 });
    w.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(999);
    expect(sent).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toHaveLength(4);
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent).toHaveLength(9);
    await w.stop();
  });

  it('stop() cancels the query in flight and any pending retry, and nothing runs after it', async () => {
    const { sent, query } = scriptedConsul([result(5n)]);
    const { w, errors } = watcher(query);
    w.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(sent).toEqual([0n, 5n]);
    await w.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(sent).toEqual([0n, 5n]);
    expect(errors).toEqual([]);

    const failing = scriptedConsul([new Error('down'), result(1n)]);
    const second = watcher(failing.query);
    second.w.start();
    await vi.advanceTimersByTimeAsync(0);
    await second.w.stop();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(failing.sent).toEqual([0n]);
  });

  it('keeps watching when the consumer throws, reporting it as an error', async () => {
    const { sent, query } = scriptedConsul([result(5n), result(6n)]);
    const errors: unknown[] = [];
    const w = new ServiceWatcher({
      service: 'web',
      query,
      backoff: new ExponentialBackoff(100, 800, () => 1),
      bucket: new TokenBucket(100, 0),
      onResult: () => {
        throw new Error('consumer bug');
      },
      onError: (err) => errors.push(err),
    });
    w.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(errors).toHaveLength(2);
    expect(sent).toEqual([0n, 5n, 6n]);
    await w.stop();
  });
});
