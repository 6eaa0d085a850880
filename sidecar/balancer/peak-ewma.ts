/**
 * Peak EWMA of endpoint latency, as linkerd2-proxy keeps it: a sample above the estimate replaces it at
 * once (react to trouble fast), a sample below decays it towards the sample over `decayMs` (recover
 * slowly). The estimate also decays while no samples arrive, so an endpoint that was slow once is
 * tried again. Pure math plus a per-endpoint timestamp; the clock is passed in.
 */
import type { EndpointState } from '../cluster/endpoint-state.ts';

export const DEFAULT_RTT_MS = 30;
export const DEFAULT_EWMA_DECAY_MS = 10_000;

/** Next estimate from the previous one (taken `elapsedMs` ago) and a new sample. */
export function peakEwma(previous: number, elapsedMs: number, sampleMs: number, decayMs: number): number {
  if (previous === 0 || sampleMs > previous) return sampleMs;
  const w = Math.exp(-Math.max(0, elapsedMs) / decayMs);
  return previous * w + sampleMs * (1 - w);
}

const sampledAt = new WeakMap<EndpointState, number>();

/** Feeds one latency sample into `state.latencyEwmaMs`. */
export function recordLatency(state: EndpointState, sampleMs: number, now: number, decayMs = DEFAULT_EWMA_DECAY_MS): void {
  const last = sampledAt.get(state) ?? now;
  state.latencyEwmaMs = peakEwma(state.latencyEwmaMs, now - last, sampleMs, decayMs);
  sampledAt.set(state, now);
}

/** The estimate as of `now`: decayed towards the default RTT since the last sample; the default when unsampled. */
export function currentLatency(state: EndpointState, now: number, decayMs = DEFAULT_EWMA_DECAY_MS, defaultRttMs = DEFAULT_RTT_MS): number {
  const ewma = state.latencyEwmaMs;
  if (ewma === 0) return defaultRttMs;
  const last = sampledAt.get(state);
  if (last === undefined || ewma <= defaultRttMs) return ewma;
  const w = Math.exp(-Math.max(0, now - last) / decayMs);
  return ewma * w + defaultRttMs * (1 - w);
}
