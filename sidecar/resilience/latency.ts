/**
 * Feeds each attempt's time to response headers into the endpoint's peak EWMA (`latencyEwmaMs`), which
 * the p2c_ewma balancer and telemetry read. A failed attempt counts as at least ten times the current
 * estimate, so an endpoint that fails fast does not look fast.
 */
import { performance } from 'node:perf_hooks';
import { currentLatency, recordLatency } from '../balancer/peak-ewma.ts';
import { type AttemptWatch, watchAttempts } from '../protocols/attempt-watch.ts';
import { abortWatchOf, type Forward } from '../protocols/exchange.ts';

const FAILURE_PENALTY = 10;

/** The latency feed as an attempt watch (it shares its promise with the watches next to it). */
export const latencyWatch: AttemptWatch = {
  response(_x, response, attempt) {
    const now = performance.now();
    recordLatency(response.endpoint, now - attempt.startedAt, now);
  },
  failure(x, _err, attempt) {
    if (attempt === undefined || x.tried.length <= attempt.triedBefore || abortWatchOf(x).aborted) return;
    const state = x.tried[x.tried.length - 1]!;
    const now = performance.now();
    recordLatency(state, Math.max(now - attempt.startedAt, FAILURE_PENALTY * currentLatency(state, now)), now);
  },
};

/** The latency feed as a layer of its own around `next`. */
export function createLatencyFeed(next: Forward): Forward {
  return watchAttempts([latencyWatch], next);
}
