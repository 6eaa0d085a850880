/**
 * Outlier detection by consecutive failures (Envoy's consecutive_5xx): an endpoint that fails N times in
 * a row is ejected for base x (times ejected), capped; the multiplier drops by one for every `interval`
 * the endpoint spends back in without being ejected. At most maxEjectionPercent of the endpoints are out
 * at once (but at least one may be), and the last available endpoint is never ejected: a degraded
 * answer beats none. Pure: times are passed in.
 */
import type { EndpointState } from '../cluster/endpoint-state.ts';
import type { OutlierDetectionConfig } from './outlier-config.ts';

interface Record {
  consecutive: number;
  timesEjected: number;
  /** When the last ejection ended (the multiplier decays from there). */
  returnedAt: number;
}

export class OutlierDetector {
  readonly #conf: OutlierDetectionConfig;
  readonly #records = new WeakMap<EndpointState, Record>();

  constructor(conf: OutlierDetectionConfig) {
    this.#conf = conf;
  }

  /** A success resets the failure streak. */
  success(state: EndpointState): void {
    const record = this.#records.get(state);
    if (record) record.consecutive = 0;
  }

  /**
   * Records a failure of `state` among `all` the cluster's endpoints; returns the ejection length in ms
   * when this failure ejected it (the caller announces it), else undefined.
   */
  failure(state: EndpointState, all: readonly EndpointState[], now: number): number | undefined {
    let record = this.#records.get(state);
    if (!record) {
      record = { consecutive: 0, timesEjected: 0, returnedAt: 0 };
      this.#records.set(state, record);
    }
    record.consecutive++;
    if (record.consecutive < this.#conf.consecutiveFailures || state.ejectedUntil > now) return undefined;
    let ejected = 0;
    let othersAvailable = 0;
    for (const ep of all) {
      if (ep.ejectedUntil > now) ejected++;
      else if (ep !== state && ep.isAvailable(now)) othersAvailable++;
    }
    const maxEjected = Math.max(1, Math.floor((all.length * this.#conf.maxEjectionPercent) / 100));
    if (ejected >= maxEjected || othersAvailable === 0) return undefined;
    const decay = this.#conf.interval > 0 ? Math.floor((now - record.returnedAt) / this.#conf.interval) : 0;
    record.timesEjected = Math.max(0, record.timesEjected - decay) + 1;
    const durationMs = Math.min(this.#conf.baseEjectionTime * record.timesEjected, Math.max(this.#conf.maxEjectionTime, this.#conf.baseEjectionTime));
    record.consecutive = 0;
    record.returnedAt = now + durationMs;
    state.ejectedUntil = now + durationMs;
    return durationMs;
  }

  /** How many times `state` has been ejected (after decay is next applied); for the admin view and tests. */
  timesEjected(state: EndpointState): number {
    return this.#records.get(state)?.timesEjected ?? 0;
  }
}
