import { performance } from 'node:perf_hooks';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import { currentLatency } from './peak-ewma.ts';
import { mathRandomInt, type PickContext, type Picker, type RandomInt } from './types.ts';

/**
 * Power of two choices over peak-EWMA cost (linkerd2-proxy's balancer): sample two distinct endpoints
 * and take the cheaper, where cost = latency estimate x (in-flight + 1) / weight. Slow or busy
 * endpoints lose most comparisons without being starved, and an unsampled endpoint counts the default
 * RTT so new endpoints get traffic.
 */
export class P2cEwmaPicker implements Picker {
  readonly #random: RandomInt;
  readonly #now: () => number;

  constructor(random: RandomInt = mathRandomInt, now: () => number = () => performance.now()) {
    this.#random = random;
    this.#now = now;
  }

  update(): void {}

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState {
    const skip = candidates.length > 1 ? ctx.avoid : undefined;
    const n = candidates.length - (skip && candidates.includes(skip) ? 1 : 0);
    if (n === 1) return candidates.find((c) => c !== skip)!;
    const a = this.#draw(candidates, skip, undefined);
    const b = this.#draw(candidates, skip, a);
    const now = this.#now();
    return this.#cost(b, now) < this.#cost(a, now) ? b : a;
  }

  #cost(ep: EndpointState, now: number): number {
    return (currentLatency(ep, now) * (ep.active + 1)) / ep.weight;
  }

  /** Uniform draw among candidates other than `skip` and `taken`. */
  #draw(candidates: readonly EndpointState[], skip: EndpointState | undefined, taken: EndpointState | undefined): EndpointState {
    for (;;) {
      const c = candidates[this.#random(candidates.length)]!;
      if (c !== skip && c !== taken) return c;
    }
  }
}
