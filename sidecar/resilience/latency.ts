/**
 * Feeds each attempt's time to response headers into the endpoint's peak EWMA (`latencyEwmaMs`), which
 * the p2c_ewma balancer and telemetry read. A failed attempt counts as at least ten times the current
 * estimate, so an endpoint that fails fast does not look fast.
 */
import { performance } from 'node:perf_hooks';
import { currentLatency, recordLatency } from '../balancer/peak-ewma.ts';
import { abortWatchOf, callForward, type Forward, type ProxyExchange, type UpstreamResponse } from '../protocols/exchange.ts';

const FAILURE_PENALTY = 10;

/** Builds the latency layer around `next`. */
export function createLatencyFeed(next: Forward): Forward {
  // A promise chain rather than an async function: one fewer frame and promise per attempt.
  return function latencyFeed(x: ProxyExchange): Promise<UpstreamResponse> {
    const started = performance.now();
    const triedBefore = x.tried.length;
    return callForward(next, x).then(
      (response) => {
        const now = performance.now();
        recordLatency(response.endpoint, now - started, now);
        return response;
      },
      (err: unknown) => {
        if (x.tried.length > triedBefore && !abortWatchOf(x).aborted) {
          const state = x.tried[x.tried.length - 1]!;
          const now = performance.now();
          recordLatency(state, Math.max(now - started, FAILURE_PENALTY * currentLatency(state, now)), now);
        }
        throw err;
      },
    );
  };
}
