import type { EndpointState } from '../cluster/endpoint-state.ts';
import { hash32 } from './hash.ts';
import { pickWeightedRandom } from './random.ts';
import { mathRandomInt, type PickContext, type Picker, type RandomInt } from './types.ts';

/** Table size: a prime well above the endpoint count (Envoy's default). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/** Extra lookups with re-seeded hashes before a key whose endpoint is unavailable falls back to random. */
const REHASH_TRIES = 8;

/**
 * Maglev consistent hashing (Google's Maglev paper, Envoy's `maglev`): a lookup table where each
 * endpoint fills slots in its own pseudo-random order, in turns proportional to its weight. Lookups are
 * one array read, spread is even, and a change of one endpoint moves about 1/N of the keys. A key whose
 * endpoint is unavailable or avoided is re-hashed, so its traffic spreads and returns with the endpoint.
 */
export class MaglevPicker implements Picker {
  readonly #size: number;
  readonly #random: RandomInt;
  #table = new Int32Array(0);
  #endpoints: readonly EndpointState[] = [];

  constructor(tableSize = DEFAULT_MAGLEV_TABLE_SIZE, random: RandomInt = mathRandomInt) {
    this.#size = tableSize;
    this.#random = random;
  }

  update(endpoints: readonly EndpointState[]): void {
    // Sorted so the table depends only on the set, not on discovery order.
    const eps = [...endpoints].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.#endpoints = eps;
    const m = this.#size;
    const table = new Int32Array(eps.length === 0 ? 0 : m).fill(-1);
    if (eps.length > 0) {
      const offset = eps.map((ep) => hash32(ep.key, 1) % m);
      const skip = eps.map((ep) => (hash32(ep.key, 2) % (m - 1)) + 1);
      const next = new Array<number>(eps.length).fill(0);
      const maxWeight = Math.max(...eps.map((ep) => ep.weight));
      const credit = new Array<number>(eps.length).fill(0);
      let filled = 0;
      while (filled < m) {
        for (let i = 0; i < eps.length && filled < m; i++) {
          credit[i]! += eps[i]!.weight / maxWeight;
          if (credit[i]! < 1) continue;
          credit[i]! -= 1;
          let slot = (offset[i]! + next[i]! * skip[i]!) % m;
          while (table[slot] !== -1) {
            next[i]!++;
            slot = (offset[i]! + next[i]! * skip[i]!) % m;
          }
          table[slot] = i;
          next[i]!++;
          filled++;
        }
      }
    }
    this.#table = table;
  }

  pick(candidates: readonly EndpointState[], ctx: PickContext): EndpointState {
    if (ctx.hashKey === undefined || this.#table.length === 0) return pickWeightedRandom(candidates, ctx.avoid, this.#random);
    const allowed = candidates.length === this.#endpoints.length ? undefined : new Set(candidates);
    const skip = candidates.length > 1 ? ctx.avoid : undefined;
    for (let seed = 0; seed < REHASH_TRIES; seed++) {
      const owner = this.#endpoints[this.#table[hash32(ctx.hashKey, seed) % this.#size]!]!;
      if (owner !== skip && (allowed === undefined || allowed.has(owner))) return owner;
    }
    return pickWeightedRandom(candidates, ctx.avoid, this.#random);
  }
}
