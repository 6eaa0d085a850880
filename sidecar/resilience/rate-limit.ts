/**
 * The rate-limit layer: a token bucket per client key (one shared bucket, source IP, a header, or the
 * mTLS peer identity). Over the limit: 429 `rate_limited` with `retry-after` in seconds, before any
 * upstream work is done.
 */
import { meshError } from '../errors.ts';
import { CALLER_NOTE } from '../security/inbound.ts';
import type { Forward, ProxyExchange, UpstreamResponse } from '../protocols/exchange.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { RateLimitConfig } from './rate-limit-config.ts';
import { KeyedTokenBuckets } from './token-bucket.ts';

export interface RateLimitDeps {
  /** What is limited, for errors and events, e.g. `upstream:greeter` or `inbound`. */
  readonly scope: string;
  readonly events: MeshEvents;
  readonly now?: () => number;
}

/** The client key of a request under `conf.key`. */
function keyFunction(conf: RateLimitConfig): (x: ProxyExchange) => string {
  switch (conf.key) {
    case 'none':
      return () => '';
    case 'source_ip':
      return (x) => x.req.socket.remoteAddress ?? '';
    case 'header':
      return (x) => {
        const v = x.headers[conf.header!];
        return Array.isArray(v) ? v.join(',') : (v ?? '');
      };
    case 'identity':
      // The inbound authorization layer (outermost on inbound) leaves the caller's SPIFFE ID in the notes.
      return (x) => {
        const identity = x.notes.get(CALLER_NOTE);
        return typeof identity === 'string' ? identity : (x.req.socket.remoteAddress ?? '');
      };
  }
}

/** Builds the rate-limit layer around `next`. */
export function createRateLimit(conf: RateLimitConfig, next: Forward, deps: RateLimitDeps): Forward {
  const burst = conf.burst ?? Math.ceil(conf.requestsPerSecond);
  const buckets = new KeyedTokenBuckets(conf.requestsPerSecond, burst, conf.maxKeys);
  const keyOf = keyFunction(conf);
  const now = deps.now ?? Date.now;
  const { scope, events } = deps;
  return function rateLimit(x: ProxyExchange): Promise<UpstreamResponse> {
    const key = keyOf(x);
    const waitMs = buckets.take(key, now());
    if (waitMs === 0) return next(x);
    events.emit('rateLimited', { scope, key });
    const err = meshError('RATE_LIMITED', `${scope}: over ${conf.requestsPerSecond} requests/s${key ? ` for client "${key}"` : ''}`);
    err.headers = { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))) };
    return Promise.reject(err);
  };
}
