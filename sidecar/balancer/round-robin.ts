import type { EndpointState } from '../cluster/endpoint-state.ts';
import type { PickContext, Picker } from './types.ts';

/**
 * Smooth weighted round robin (the nginx algorithm): each pick adds every candidate's weight to its
 * running score, takes the highest, and subtracts the total from the winner. Weights 5:1:1 give
 * a a b a c a a rather than bursts, and equal weights give plain round robin.
 */
export class RoundRobinPicker implements Picker {
  update(endpoints: readonly EndpointState[]): void {
    for (const ep of endpoints) ep.balancerWeight = 0;
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState {
    let total = 0;
    let best: EndpointState | undefined;
    for (const ep of candidates) {
      ep.balancerWeight += ep.weight;
      total += ep.weight;
      if (!best || ep.balancerWeight > best.balancerWeight) best = ep;
    }
    let chosen = best!;
    // A retry should land elsewhere: take the runner-up when the best is the endpoint to avoid.
    if (chosen === ctx.avoid && candidates.length > 1) {
      let second: EndpointState | undefined;
      for (const ep of candidates) if (ep !== chosen && (!second || ep.balancerWeight > second.balancerWeight)) second = ep;
      chosen = second!;
    }
    chosen.balancerWeight -= total;
    return chosen;
  }
}
