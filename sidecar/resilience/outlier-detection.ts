/**
 * The outlier detection layer: watches each attempt's outcome (5xx, connect failure, reset, timeout
 * count as failures; client aborts do not) and feeds the OutlierDetector, which ejects endpoints by
 * setting `ejectedUntil` (the cluster's pick skips them). Ejections and returns are announced as
 * `outlier` events.
 */
import { isMeshError } from '../errors.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import { abortWatchOf, callForward, type Forward, type ProxyExchange, type UpstreamResponse } from '../protocols/exchange.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { OutlierDetector } from './outlier-detector.ts';

export interface OutlierDeps {
  readonly upstream: string;
  readonly cluster: Cluster;
  readonly events: MeshEvents;
  readonly log: Logger;
  /** Timers announcing returns; cleared on drain. */
  readonly timers: Set<NodeJS.Timeout>;
}

/** Builds the outlier layer around `next`, reporting to `detector`. */
export function createOutlierDetection(detector: OutlierDetector, next: Forward, deps: OutlierDeps): Forward {
  const { upstream, cluster, events, log, timers } = deps;

  function failed(state: EndpointState): void {
    const now = Date.now();
    const durationMs = detector.failure(state, cluster.endpoints, now);
    if (durationMs === undefined) return;
    log.info({ upstream, endpoint: state.key, durationMs }, 'endpoint ejected by outlier detection');
    events.emit('outlier', { upstream, endpoint: state.key, ejected: true, durationMs });
    const timer = setTimeout(() => {
      timers.delete(timer);
      log.info({ upstream, endpoint: state.key }, 'ejected endpoint returns');
      events.emit('outlier', { upstream, endpoint: state.key, ejected: false });
    }, durationMs);
    timer.unref();
    timers.add(timer);
  }

  const judgeResponse = (response: UpstreamResponse): UpstreamResponse => {
    if (response.statusCode >= 500) failed(response.endpoint);
    else detector.success(response.endpoint);
    return response;
  };

  // A promise chain rather than an async function: one fewer frame and promise per attempt.
  return function outlierWatch(x: ProxyExchange): Promise<UpstreamResponse> {
    const triedBefore = x.tried.length;
    return callForward(next, x).then(judgeResponse, (err: unknown) => {
      const upstreamFault = isMeshError(err, 'UPSTREAM_CONNECT') || isMeshError(err, 'UPSTREAM_RESET') || isMeshError(err, 'UPSTREAM_TIMEOUT');
      // Only when this attempt reached an endpoint, and not because our own client went away.
      if (upstreamFault && x.tried.length > triedBefore && !abortWatchOf(x).aborted) failed(x.tried[x.tried.length - 1]!);
      throw err;
    });
  };
}
