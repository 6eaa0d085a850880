import type { EndpointState } from '../cluster/endpoint-state.ts';
import { mathRandomInt, type PickContext, type Picker, type RandomInt } from './types.ts';

/**
 * Least request with the power of two choices: sample two distinct candidates and take the one with
 * fewer in-flight requests per unit of weight. Close to "least loaded" without scanning, and without
 * the herding a strict minimum causes when many sidecars share stale counts. Samples are drawn in
 * proportion to weight and a tie keeps the first, so when load per weight is equal (a quiet service)
 * traffic follows the weights exactly.
 */
export class LeastRequestPicker implements Picker {
  readonly #random: RandomInt;

  constructor(random: RandomInt = mathRandomInt) {
    this.#random = random;
  }

  update(): void {}

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState {
    const pool = ctx.avoid && candidates.length > 1 ? candidates.filter((c) => c !== ctx.avoid) : candidates;
    if (pool.length === 1) return pool[0]!;
    const a = this.#sample(pool, undefined);
    const b = this.#sample(pool, a);
    // In-flight per unit of weight; on a tie the first sample wins. Not (active + 1) / weight: that
    // would favour heavy endpoints even when idle, on top of the weighted sampling (5:1:1 became 19:1:1).
    const loadA = a.active / a.weight;
    const loadB = b.active / b.weight;
    return loadB < loadA ? b : a;
  }

  /** Draws one candidate in proportion to weight, skipping `except`. */
  #sample(pool: readonly EndpointState[], except: EndpointState | undefined): EndpointState {
    let total = 0;
    for (const ep of pool) if (ep !== except) total += ep.weight;
    let ticket = this.#random(total);
    for (const ep of pool) {
      if (ep === except) continue;
      if (ticket < ep.weight) return ep;
      ticket -= ep.weight;
    }
    return pool[pool.length - 1]!;
  }
}
