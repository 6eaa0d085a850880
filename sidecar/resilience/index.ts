/**
 * Resilience policies, assembled per upstream from config. Outbound chain, outermost first:
 *
 *   rateLimit -> hashKey -> sticky -> retry -> circuitBreaker -> outlierDetection -> latency -> (telemetry) -> forward
 *
 * Per-request policies sit outside the retry layer; per-attempt ones inside it, so each attempt takes a
 * breaker slot, feeds outlier detection and the latency EWMA. Those three are attempt watches
 * (protocols/attempt-watch.ts): bookkeeping around one shared promise per attempt rather than a
 * layer, and a promise, each. A policy whose config turns it off is
 * left out of the chain rather than run as a no-op. Active health checks and listener connection
 * limits are not layers: `installResilience` registers the checkers as upstream tasks (the sidecar
 * starts them once listeners are bound or a reload adds the upstream, and stops them on removal and
 * drain); `connectionGateOptions` hands listeners their limits. Admin `GET /resilience` shows the
 * breakers' counters, the retry budgets and each endpoint's health-check streak.
 */
import { sendJson } from '../admin/server.ts';
import { type ChainLink, composeChain } from '../protocols/attempt-watch.ts';
import type { Forward, ForwardLayer } from '../protocols/exchange.ts';
import type { Sidecar, UpstreamLayerContext } from '../sidecar.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import { createHashKey, createSticky } from './affinity.ts';
import { ConcurrencyLimits, circuitBreakerWatch } from './circuit-breaker.ts';
import type { ConnectionGateOptions } from './connection-limit.ts';
import { HealthChecker } from './health-check.ts';
import { latencyWatch } from './latency.ts';
import { OutlierDetector } from './outlier-detector.ts';
import { outlierWatch } from './outlier-detection.ts';
import { createRateLimit } from './rate-limit.ts';
import type { ConnectionLimitConfig } from './rate-limit-config.ts';
import { createRetry } from './retry.ts';
import { RetryBudget } from './retry-budget.ts';

/** State shared by one upstream's layers (the breaker's counters are read by the retry layer). */
interface UpstreamPolicyState {
  readonly ctx: UpstreamLayerContext;
  readonly limits: ConcurrencyLimits | undefined;
  readonly runtime: ResilienceRuntime;
}

/**
 * Builds one policy's link for an upstream (a layer, or a watch that shares its promise with the watches
 * next to it), or undefined when its config leaves it off.
 */
type PolicyFactory = (state: UpstreamPolicyState) => ChainLink | undefined;

/** The policies by name; `OUTBOUND_ORDER` says how they nest. */
export const OUTBOUND_POLICIES = {
  rateLimit: ({ ctx }) => {
    const conf = ctx.upstream.rateLimit;
    return conf && ((next) => createRateLimit(conf, next, { scope: `upstream:${ctx.upstream.name}`, events: ctx.events }));
  },
  hashKey: ({ ctx }) => {
    const conf = ctx.upstream.hashPolicy;
    return conf && ((next) => createHashKey(conf, next));
  },
  sticky: ({ ctx }) => {
    const conf = ctx.upstream.sticky;
    return conf && ((next) => createSticky(conf, next));
  },
  retry: ({ ctx, limits, runtime }) => {
    const conf = ctx.upstream.retries;
    runtime.budgets.delete(ctx.upstream.name);
    if (!conf.enabled || conf.maxAttempts === 1) return undefined;
    const { ratio, minRetriesPerSecond, window } = conf.budget;
    const budget = new RetryBudget({ ratio, minRetriesPerSecond, windowMs: window });
    runtime.budgets.set(ctx.upstream.name, budget);
    return (next) => createRetry(conf, next, { upstream: ctx.upstream.name, events: ctx.events, budget, limits, requestTimeoutMs: ctx.upstream.timeouts.request });
  },
  circuitBreaker: ({ ctx, limits }) => limits && circuitBreakerWatch(limits, { upstream: ctx.upstream.name, events: ctx.events }),
  outlierDetection: ({ ctx, runtime: { timers } }) => {
    const conf = ctx.upstream.outlierDetection;
    if (!conf.enabled) return undefined;
    return outlierWatch(new OutlierDetector(conf), { upstream: ctx.upstream.name, cluster: ctx.cluster, events: ctx.events, log: ctx.log, timers });
  },
  latency: () => latencyWatch,
} as const satisfies Record<string, PolicyFactory>;

export type PolicyName = keyof typeof OUTBOUND_POLICIES;

/** Nesting of the outbound chain, outermost first. */
export const OUTBOUND_ORDER: readonly PolicyName[] = ['rateLimit', 'hashKey', 'sticky', 'retry', 'circuitBreaker', 'outlierDetection', 'latency'];

/** What the sidecar's resilience keeps across upstreams: timers to clear on drain, state to show. */
export interface ResilienceRuntime {
  readonly timers: Set<NodeJS.Timeout>;
  readonly breakers: Map<string, ConcurrencyLimits>;
  readonly budgets: Map<string, RetryBudget>;
}

/** Builds an upstream's resilience chain as one layer. */
export function buildOutboundChain(ctx: UpstreamLayerContext, runtime: ResilienceRuntime): ForwardLayer {
  const breaker = ctx.upstream.circuitBreaker;
  const limits = breaker.enabled ? new ConcurrencyLimits(breaker) : undefined;
  if (limits) runtime.breakers.set(ctx.upstream.name, limits);
  else runtime.breakers.delete(ctx.upstream.name);
  const state: UpstreamPolicyState = { ctx, limits, runtime };
  const links: ChainLink[] = [];
  for (const name of OUTBOUND_ORDER) {
    const link = (OUTBOUND_POLICIES[name] as PolicyFactory)(state);
    if (link) links.push(link);
  }
  return (next: Forward) => composeChain(links, next);
}

/** Listener options for a connection limit, refusals announced as `rateLimited` events. */
export function connectionGateOptions(events: MeshEvents, listener: string, conf: ConnectionLimitConfig | undefined): ConnectionGateOptions | undefined {
  if (!conf) return undefined;
  return { ...conf, onRefused: (reason, peer) => events.emit('rateLimited', { scope: `listener:${listener}`, key: `${reason}:${peer ?? 'unknown'}` }) };
}

/**
 * Wires resilience into a sidecar: the outbound chain for every HTTP upstream (first in
 * `outboundLayers`, so outermost), the inbound rate limit, active health checks as upstream tasks,
 * and the admin view.
 */
export function installResilience(sidecar: Sidecar): void {
  const runtime: ResilienceRuntime = { timers: new Set(), breakers: new Map(), budgets: new Map() };
  const { timers } = runtime;
  sidecar.outboundLayers.unshift((ctx) => buildOutboundChain(ctx, runtime));
  // Read when the inbound handler is built, so a rebuilt handler (config reload) gets the current limit.
  sidecar.inboundLayers.unshift((next) => {
    const conf = sidecar.config.inbound.rateLimit;
    return conf ? createRateLimit(conf, next, { scope: 'inbound', events: sidecar.events }) : next;
  });
  // Started and stopped by the sidecar with each upstream: once listeners are bound, on hot reload, on drain.
  const checkers = new Map<string, HealthChecker>();
  sidecar.upstreamTasks.push(({ upstream, cluster }) => {
    if (!upstream.healthCheck) return undefined;
    const checker = new HealthChecker(upstream.healthCheck, { upstream: upstream.name, cluster, events: sidecar.events, log: sidecar.log });
    return {
      start: () => {
        checkers.set(upstream.name, checker);
        checker.start();
      },
      stop: () => {
        if (checkers.get(upstream.name) === checker) checkers.delete(upstream.name);
        checker.stop();
      },
    };
  });
  sidecar.admin.route('GET', '/resilience', (_req, res) => {
    const upstreams: Record<string, unknown> = {};
    for (const { name } of sidecar.config.upstreams) {
      const limits = runtime.breakers.get(name);
      upstreams[name] = {
        circuitBreaker: limits ? { onWire: limits.onWire, pending: limits.pending, retriesInFlight: limits.retries } : 'off',
        retryBudget: runtime.budgets.get(name)?.snapshot() ?? 'off',
        healthCheck: checkers.get(name)?.status() ?? 'off',
      };
    }
    sendJson(res, 200, { upstreams });
  });
  sidecar.beforeDrain.push(async () => {
    for (const timer of timers) clearTimeout(timer);
    timers.clear();
  });
}
