/**
 * Outlier detection: watches each attempt's outcome (5xx, connect failure, reset, timeout
 * count as failures; client aborts do not) and feeds the OutlierDetector, which ejects endpoints by
 * setting `ejectedUntil` (the cluster's pick skips them). Ejections and returns are announced as
 * `outlier` events.
 */
import { isMeshError } from '../errors.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import { type AttemptWatch, watchAttempts } from '../protocols/attempt-watch.ts';
import { abortWatchOf, type Forward } from '../protocols/exchange.ts';
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

/** Outlier detection as an attempt watch reporting to `detector` (it shares its promise with the watches next to it). */
export function outlierWatch(detector: OutlierDetector, deps: OutlierDeps): AttemptWatch {
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

  return {
    response(_x, response) {
      if (response.statusCode >= 500) failed(response.endpoint);
      else detector.success(response.endpoint);
    },
    failure(x, err, attempt) {
      const upstreamFault = isMeshError(err, 'UPSTREAM_CONNECT') || isMeshError(err, 'UPSTREAM_RESET') || isMeshError(err, 'UPSTREAM_TIMEOUT');
      // Only when this attempt reached an endpoint, and not because our own client went away.
      if (upstreamFault && attempt !== undefined && x.tried.length > attempt.triedBefore && !abortWatchOf(x).aborted) failed(x.tried[x.tried.length - 1]!);
    },
  };
}

/** Outlier detection as a layer of its own around `next`. */
export function createOutlierDetection(detector: OutlierDetector, next: Forward, deps: OutlierDeps): Forward {
  return watchAttempts([outlierWatch(detector, deps)], next);
}
