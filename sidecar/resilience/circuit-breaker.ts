/**
 * The circuit breaker layer: Envoy-style concurrency limits per upstream, applied to each attempt.
 * States of an attempt: over maxRequests in flight -> 503 circuit_open at once; under maxConnections
 * on the wire -> go; else wait in a bounded FIFO for a slot (queue full or wait over pendingTimeout ->
 * 503 overflow). A slot is held until the response body ends, like the HTTP/1 connection it stands for.
 * The same limits cap concurrent retries (the retry layer asks before each retry).
 */
import { meshError } from '../errors.ts';
import { type AttemptWatch, watchAttempts } from '../protocols/attempt-watch.ts';
import { abortWatchOf, whenBodyCloses, type Forward } from '../protocols/exchange.ts';
import type { AbortWatch } from '../protocols/exchange-abort.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { CircuitBreakerConfig } from './circuit-breaker-config.ts';

interface Waiter {
  readonly admit: () => void;
  readonly fail: (err: Error) => void;
}

/** The counters one upstream's breaker keeps; shared with its retry layer. */
export class ConcurrencyLimits {
  readonly #conf: CircuitBreakerConfig;
  /** Attempts holding a connection slot. */
  onWire = 0;
  readonly #waiting: Waiter[] = [];
  retries = 0;

  constructor(conf: CircuitBreakerConfig) {
    this.#conf = conf;
  }

  get pending(): number {
    return this.#waiting.length;
  }

  /** Takes a concurrent-retry slot; false when maxRetries are already in flight. */
  tryAcquireRetry(): boolean {
    if (this.retries >= this.#conf.maxRetries) return false;
    this.retries++;
    return true;
  }

  releaseRetry(): void {
    this.retries--;
  }

  /** Whether a new attempt is over maxRequests (in flight plus waiting). */
  overRequestLimit(): boolean {
    return this.onWire + this.#waiting.length >= this.#conf.maxRequests;
  }

  /** Resolves once a connection slot is held; rejects with `overflow` when the queue is full or the wait too long. */
  acquire(signal: AbortWatch, upstream: string): Promise<void> | undefined {
    if (this.onWire < this.#conf.maxConnections) {
      this.onWire++;
      return undefined;
    }
    if (this.#waiting.length >= this.#conf.maxPending) {
      return Promise.reject(meshError('OVERFLOW', `upstream "${upstream}": ${this.onWire} requests on the wire and ${this.#waiting.length} pending (maxPending ${this.#conf.maxPending})`));
    }
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        const i = this.#waiting.indexOf(waiter);
        if (i >= 0) this.#waiting.splice(i, 1);
      };
      const waiter: Waiter = {
        admit: () => {
          done();
          resolve();
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      const onAbort = () => waiter.fail(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      const timer = setTimeout(
        () => waiter.fail(meshError('OVERFLOW', `upstream "${upstream}": no connection slot within ${this.#conf.pendingTimeout} ms (maxConnections ${this.#conf.maxConnections})`)),
        this.#conf.pendingTimeout,
      );
      signal.addEventListener('abort', onAbort);
      this.#waiting.push(waiter);
    });
  }

  /** Frees a slot, handing it straight to the oldest waiter if any. */
  release(): void {
    const waiter = this.#waiting[0];
    if (waiter) waiter.admit();
    else this.onWire--;
  }
}

export interface CircuitBreakerDeps {
  readonly upstream: string;
  readonly events: MeshEvents;
}

/** The breaker as an attempt watch enforcing `limits` (it shares its promise with the watches next to it). */
export function circuitBreakerWatch(limits: ConcurrencyLimits, deps: CircuitBreakerDeps): AttemptWatch {
  const { upstream, events } = deps;
  // Shared by every attempt: no closure per request on the common path (a slot free at once).
  const release = (): void => limits.release();
  return {
    start(x) {
      if (limits.overRequestLimit()) {
        events.emit('breakerRejected', { upstream, reason: 'circuit_open' });
        throw meshError('CIRCUIT_OPEN', `upstream "${upstream}" has ${limits.onWire + limits.pending} requests in flight, its maxRequests limit`);
      }
      const waiting = limits.acquire(abortWatchOf(x), upstream);
      return waiting?.catch((err: unknown) => {
        if (!abortWatchOf(x).aborted) events.emit('breakerRejected', { upstream, reason: 'overflow' });
        throw err;
      });
    },
    // The slot is held until the body is done, like the HTTP/1 connection it stands for.
    response(_x, response) {
      whenBodyCloses(response.body, release);
    },
    failure: release,
  };
}

/** The breaker as a layer of its own around `next`. */
export function createCircuitBreaker(limits: ConcurrencyLimits, next: Forward, deps: CircuitBreakerDeps): Forward {
  return watchAttempts([circuitBreakerWatch(limits, deps)], next);
}
