/**
 * Active health checks for one upstream: every interval (jittered), each endpoint gets an HTTP GET
 * (healthy when the status is expected), a TCP connect or a gRPC Health/Check (SERVING), over the cluster's own transport (so mTLS
 * peers are checked over mTLS). `unhealthyThreshold` failures in a row set `healthy = false` (the pick
 * skips it); `healthyThreshold` passes in a row bring it back. Changes are `endpointHealth` events.
 */
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { HealthCheckConfig } from './health-check-config.ts';
import { grpcHealthCheck } from '../protocols/grpc-health.ts';

interface Streak {
  passes: number;
  failures: number;
  running: boolean;
  /** Why the last check failed, until one passes. */
  lastFailure: string | undefined;
}

/** One endpoint's health-check state, for the admin API. */
export interface EndpointCheckStatus {
  readonly endpoint: string;
  readonly healthy: boolean;
  readonly passesInARow: number;
  readonly failuresInARow: number;
  readonly lastFailure?: string | undefined;
}

export interface HealthCheckDeps {
  readonly upstream: string;
  readonly cluster: Cluster;
  readonly events: MeshEvents;
  readonly log: Logger;
}

export class HealthChecker {
  readonly #conf: HealthCheckConfig;
  readonly #deps: HealthCheckDeps;
  readonly #streaks = new WeakMap<EndpointState, Streak>();
  readonly #inFlight = new Set<AbortController>();
  #timer: NodeJS.Timeout | undefined;
  #stopped = true;

  constructor(conf: HealthCheckConfig, deps: HealthCheckDeps) {
    this.#conf = conf;
    this.#deps = deps;
  }

  /** Checks every endpoint now, then every interval until `stop`. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#round();
  }

  /** Stops scheduling and aborts checks in flight. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const c of this.#inFlight) c.abort();
  }

  /** Each endpoint's health and current streak. */
  status(): EndpointCheckStatus[] {
    return this.#deps.cluster.endpoints.map((state) => {
      const streak = this.#streaks.get(state);
      return { endpoint: state.key, healthy: state.healthy, passesInARow: streak?.passes ?? 0, failuresInARow: streak?.failures ?? 0, lastFailure: streak?.lastFailure };
    });
  }

  #round(): void {
    if (this.#stopped) return;
    for (const state of this.#deps.cluster.endpoints) void this.#checkOne(state);
    const jitter = 1 + Math.random() * 0.1;
    this.#timer = setTimeout(() => this.#round(), this.#conf.interval * jitter);
    this.#timer.unref();
  }

  async #checkOne(state: EndpointState): Promise<void> {
    let streak = this.#streaks.get(state);
    if (!streak) {
      streak = { passes: 0, failures: 0, running: false, lastFailure: undefined };
      this.#streaks.set(state, streak);
    }
    // A check slower than the interval is not stacked upon.
    if (streak.running) return;
    streak.running = true;
    const controller = new AbortController();
    this.#inFlight.add(controller);
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${this.#conf.timeout} ms`)), this.#conf.timeout);
    let failure: string | undefined;
    try {
      failure =
        this.#conf.type === 'http'
          ? await this.#http(state, controller.signal)
          : this.#conf.type === 'grpc'
            ? await grpcHealthCheck(this.#deps.cluster, state, this.#conf.service ?? '', controller.signal)
            : await this.#tcp(state, controller.signal);
    } catch (err) {
      failure = controller.signal.aborted && controller.signal.reason instanceof Error ? controller.signal.reason.message : (err as Error).message;
    } finally {
      clearTimeout(timer);
      this.#inFlight.delete(controller);
      streak.running = false;
    }
    if (this.#stopped || !this.#deps.cluster.endpoints.includes(state)) return;
    this.#record(state, streak, failure);
  }

  #record(state: EndpointState, streak: Streak, failure: string | undefined): void {
    const { upstream, events, log } = this.#deps;
    streak.lastFailure = failure;
    if (failure === undefined) {
      streak.passes++;
      streak.failures = 0;
      if (!state.healthy && streak.passes >= this.#conf.healthyThreshold) {
        state.healthy = true;
        log.info({ upstream, endpoint: state.key }, 'endpoint healthy again');
        events.emit('endpointHealth', { upstream, endpoint: state.key, healthy: true });
      }
    } else {
      streak.failures++;
      streak.passes = 0;
      if (state.healthy && streak.failures >= this.#conf.unhealthyThreshold) {
        state.healthy = false;
        log.warn({ upstream, endpoint: state.key, reason: failure }, 'endpoint failed health checks');
        events.emit('endpointHealth', { upstream, endpoint: state.key, healthy: false });
      }
    }
  }

  /** Resolves undefined when healthy, else why not. */
  async #http(state: EndpointState, signal: AbortSignal): Promise<string | undefined> {
    const { address, port } = state.endpoint;
    const host = `${address.includes(':') ? `[${address}]` : address}:${port}`;
    const response = await this.#deps.cluster.pool(state).request({
      method: 'GET',
      path: this.#conf.path,
      headers: { 'user-agent': 'meshlet-health-check', host },
      body: null,
      signal,
      // The check's own deadline (signal) bounds the whole exchange.
      bodyIdleTimeoutMs: 0,
    });
    // Only the status matters; the rest of the body is read off so the connection can be reused.
    response.body.resume();
    return this.#conf.expectedStatuses.includes(response.statusCode) ? undefined : `status ${response.statusCode}`;
  }

  #tcp(state: EndpointState, signal: AbortSignal): Promise<string | undefined> {
    return new Promise((resolve) => {
      const socket = this.#deps.cluster.openSocket(state);
      const finish = (failure: string | undefined) => {
        signal.removeEventListener('abort', onAbort);
        socket.destroy();
        resolve(failure);
      };
      const onAbort = () => finish(signal.reason instanceof Error ? signal.reason.message : 'aborted');
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => finish(undefined));
      socket.once('error', (err: Error) => finish(err.message));
    });
  }
}
