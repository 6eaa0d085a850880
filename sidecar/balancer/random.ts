import type { EndpointState } from '../cluster/endpoint-state.ts';
import { mathRandomInt, type PickContext, type Picker, type RandomInt } from './types.ts';

/** Weighted random: no shared state between picks, so many sidecars never synchronize their choices. */
export class RandomPicker implements Picker {
  readonly #random: RandomInt;

  constructor(random: RandomInt = mathRandomInt) {
    this.#random = random;
  }

  update(): void {}

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState {
    return pickWeightedRandom(candidates, ctx.avoid, this.#random);
  }
}

/** Draws one candidate in proportion to weight, skipping `avoid` when another exists. */
export function pickWeightedRandom(candidates: readonly EndpointState[], avoid: EndpointState | undefined, random: RandomInt): EndpointState {
  const skip = candidates.length > 1 ? avoid : undefined;
  let total = 0;
  for (const ep of candidates) if (ep !== skip) total += ep.weight;
  let ticket = random(total);
  for (const ep of candidates) {
    if (ep === skip) continue;
    if (ticket < ep.weight) return ep;
    ticket -= ep.weight;
  }
  return candidates[candidates.length - 1]!;
}
