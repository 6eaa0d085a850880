import { EventEmitter } from 'node:events';
import type { Server, Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { circuitBreakerSchema } from '../../sidecar/resilience/circuit-breaker-config.ts';
import { ConcurrencyLimits } from '../../sidecar/resilience/circuit-breaker.ts';
import { ConnectionGate } from '../../sidecar/resilience/connection-limit.ts';
import { isMeshError } from '../../sidecar/errors.ts';

/** A socket stand-in: an emitter with destroy(), which emits close like a real one. */
function fakeSocket(): Socket & { destroyedByGate: boolean } {
  const s = new EventEmitter() as Socket & { destroyedByGate: boolean };
  s.destroyedByGate = false;
  (s as { remoteAddress: string }).remoteAddress = '10.0.0.9';
  s.destroy = () => {
    s.destroyedByGate = true;
    s.emit('close');
    return s;
  };
  return s;
}

describe('ConnectionGate', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('serves up to the limit, queues in order, refuses past the queue and after the queue timeout', () => {
    const server = new EventEmitter() as unknown as Server;
    const served: Socket[] = [];
    server.on('connection', (s: Socket) => served.push(s));
    const refused: string[] = [];
    const gate = new ConnectionGate(server, { maxConnections: 1, acceptQueue: 2, queueTimeout: 1000, onRefused: (reason) => refused.push(reason) });
    const [a, b, c, d] = [fakeSocket(), fakeSocket(), fakeSocket(), fakeSocket()];
    for (const s of [a, b, c, d]) server.emit('connection', s);
    expect(served).toEqual([a]);
    expect(gate.queued).toBe(2);
    expect(d.destroyedByGate).toBe(true);
    expect(refused).toEqual(['queue_full']);
    a.emit('close');
    expect(served).toEqual([a, b]);
    vi.advanceTimersByTime(1000);
    expect(c.destroyedByGate).toBe(true);
    expect(refused).toEqual(['queue_full', 'queue_timeout']);
    expect(gate.active).toBe(1);
  });

  it('drops a queued connection whose client gave up, and closes the queue on close()', () => {
    const server = new EventEmitter() as unknown as Server;
    const served: Socket[] = [];
    server.on('connection', (s: Socket) => served.push(s));
    const gate = new ConnectionGate(server, { maxConnections: 1, acceptQueue: 5, queueTimeout: 1000 });
    const [a, b, c] = [fakeSocket(), fakeSocket(), fakeSocket()];
    for (const s of [a, b, c]) server.emit('connection', s);
    b.emit('close');
    expect(gate.queued).toBe(1);
    a.emit('close');
    expect(served).toEqual([a, c]);
    const e = fakeSocket();
    server.emit('connection', e);
    gate.close();
    expect(e.destroyedByGate).toBe(true);
    expect(gate.queued).toBe(0);
  });
});

describe('ConcurrencyLimits', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('hands a freed slot to the oldest waiter and fails a waiter after pendingTimeout with overflow', async () => {
    const limits = new ConcurrencyLimits(circuitBreakerSchema.parse({ maxConnections: 1, maxPending: 2, pendingTimeout: 500 }));
    const signal = new AbortController().signal;
    expect(limits.acquire(signal, 'api')).toBeUndefined();
    const first = limits.acquire(signal, 'api')!;
    const second = limits.acquire(signal, 'api')!;
    await expect(limits.acquire(signal, 'api')).rejects.toSatisfy((e: unknown) => isMeshError(e, 'OVERFLOW'));
    limits.release();
    await first;
    expect(limits.onWire).toBe(1);
    expect(limits.pending).toBe(1);
    vi.advanceTimersByTime(500);
    await expect(second).rejects.toSatisfy((e: unknown) => isMeshError(e, 'OVERFLOW'));
    expect(limits.pending).toBe(0);
    limits.release();
    expect(limits.onWire).toBe(0);
  });

  it('caps concurrent retries at maxRetries', () => {
    const limits = new ConcurrencyLimits(circuitBreakerSchema.parse({ maxRetries: 2 }));
    expect([limits.tryAcquireRetry(), limits.tryAcquireRetry(), limits.tryAcquireRetry()]).toEqual([true, true, false]);
    limits.releaseRetry();
    expect(limits.tryAcquireRetry()).toBe(true);
  });
});

describe('breaker layer around an inner layer that throws instead of rejecting', () => {
  it('rejects the attempt and gives the slot back, as an async layer would', async () => {
    const { createCircuitBreaker } = await import('../../sidecar/resilience/circuit-breaker.ts');
    const { createLatencyFeed } = await import('../../sidecar/resilience/latency.ts');
    const limits = new ConcurrencyLimits(circuitBreakerSchema.parse({ maxConnections: 1 }));
    const events = new EventEmitter() as unknown as Parameters<typeof createCircuitBreaker>[2]['events'];
    const throwing = (): never => {
      throw new Error('layer bug');
    };
    const forward = createCircuitBreaker(limits, createLatencyFeed(throwing), { upstream: 'web', events });
    const exchange = { tried: [], signal: new AbortController().signal } as unknown as Parameters<typeof forward>[0];
    const attempt = forward(exchange);
    expect(attempt).toBeInstanceOf(Promise);
    await expect(attempt).rejects.toThrow('layer bug');
    expect(limits.onWire).toBe(0);
    // The slot really is free: the next attempt gets it at once instead of queueing.
    await expect(forward(exchange)).rejects.toThrow('layer bug');
    expect(limits.onWire).toBe(0);
  });
});
