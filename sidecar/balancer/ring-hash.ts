import type { EndpointState } from '../cluster/endpoint-state.ts';
import { hash32 } from './hash.ts';
import { pickWeightedRandom } from './random.ts';
import { mathRandomInt, type PickContext, type Picker, type RandomInt } from './types.ts';

/** Points per unit of weight (as Ketama); fixed, so adding an endpoint takes keys only for itself. */
export const DEFAULT_POINTS_PER_WEIGHT = 160;
/** Ring size cap: with huge weights the points per weight shrink, and then keys move a little more. */
const MAX_RING_SIZE = 1 << 20;

/**
 * Consistent hashing on a ring (Ketama, as Envoy's ring_hash): each endpoint owns points on a 32-bit
 * ring in proportion to its weight; a key goes to the first point clockwise from its hash. Adding or
 * removing one of N endpoints moves only about 1/N of the keys, all to or from that endpoint. Unavailable or avoided endpoints are
 * skipped by walking on, so their keys spread over the others and come back when they return.
 */
export class RingHashPicker implements Picker {
  readonly #pointsPerWeight: number;
  readonly #random: RandomInt;
  #points = new Uint32Array(0);
  #owners: EndpointState[] = [];
  #all: readonly EndpointState[] = [];

  constructor(pointsPerWeight = DEFAULT_POINTS_PER_WEIGHT, random: RandomInt = mathRandomInt) {
    this.#pointsPerWeight = pointsPerWeight;
    this.#random = random;
  }

  update(endpoints: readonly EndpointState[]): void {
    this.#all = endpoints;
    let totalWeight = 0;
    for (const ep of endpoints) totalWeight += ep.weight;
    const perWeight = Math.max(1, Math.min(this.#pointsPerWeight, Math.floor(MAX_RING_SIZE / Math.max(1, totalWeight))));
    const entries: Array<{ point: number; owner: EndpointState }> = [];
    for (const ep of endpoints) {
      const replicas = perWeight * ep.weight;
      for (let i = 0; i < replicas; i++) entries.push({ point: hash32(`${ep.key}_${i}`), owner: ep });
    }
    // Ties broken by key so every sidecar builds the same ring from the same endpoints.
    entries.sort((a, b) => a.point - b.point || (a.owner.key < b.owner.key ? -1 : a.owner.key > b.owner.key ? 1 : 0));
    this.#points = Uint32Array.from(entries, (e) => e.point);
    this.#owners = entries.map((e) => e.owner);
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState {
    if (ctx.hashKey === undefined || this.#points.length === 0) return pickWeightedRandom(candidates, ctx.avoid, this.#random);
    const allowed = candidates.length === this.#all.length ? undefined : new Set(candidates);
    const skip = candidates.length > 1 ? ctx.avoid : undefined;
    const points = this.#points;
    let i = lowerBound(points, hash32(ctx.hashKey));
    for (let walked = 0; walked < points.length; walked++, i++) {
      const owner = this.#owners[i % points.length]!;
      if (owner !== skip && (allowed === undefined || allowed.has(owner))) return owner;
    }
    return pickWeightedRandom(candidates, ctx.avoid, this.#random);
  }
}

/** Index of the first point >= value (points.length when none). */
function lowerBound(points: Uint32Array, value: number): number {
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (points[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
