import { describe, expect, it } from 'vitest';
import { EndpointState } from '../../sidecar/cluster/endpoint-state.ts';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';
import { MaglevPicker } from '../../sidecar/balancer/maglev.ts';
import { RingHashPicker } from '../../sidecar/balancer/ring-hash.ts';
import { StickyPicker, stickyId } from '../../sidecar/balancer/sticky.ts';
import { RoundRobinPicker } from '../../sidecar/balancer/round-robin.ts';
import type { Picker } from '../../sidecar/balancer/types.ts';

function endpoints(n: number, from = 0): EndpointState[] {
  return Array.from({ length: n }, (_, i) => new EndpointState(makeEndpoint({ address: '10.1.0.1', port: 9000 + from + i })));
}

const KEYS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

function assign(picker: Picker, eps: EndpointState[]): Map<string, EndpointState> {
  picker.update(eps);
  return new Map(KEYS.map((k) => [k, picker.pick(eps, { hashKey: k })]));
}

// Ring hash moves keys only to the new endpoint; Maglev trades a little extra churn for even spread.
for (const [name, make, toNewAtLeast] of [
  ['ring hash', () => new RingHashPicker(), 1],
  ['maglev', () => new MaglevPicker(4099), 0.9],
] as const) {
  describe(`${name} picker`, () => {
    it('sends the same key to the same endpoint and spreads keys evenly', () => {
      const eps = endpoints(4);
      const picker = make();
      const first = assign(picker, eps);
      for (const k of KEYS.slice(0, 100)) expect(picker.pick(eps, { hashKey: k })).toBe(first.get(k));
      const counts = new Map<EndpointState, number>();
      for (const ep of first.values()) counts.set(ep, (counts.get(ep) ?? 0) + 1);
      for (const ep of eps) expect(counts.get(ep) ?? 0).toBeGreaterThan(KEYS.length / 4 / 2);
    });

    it('moves only about 1/N of the keys, all to the new endpoint, when one is added', () => {
      const eps = endpoints(4);
      const picker = make();
      const before = assign(picker, eps);
      const added = endpoints(1, 4)[0]!;
      const after = assign(picker, [...eps, added]);
      let moved = 0;
      let toNew = 0;
      for (const k of KEYS) {
        if (before.get(k) === after.get(k)) continue;
        moved++;
        if (after.get(k) === added) toNew++;
      }
      expect(toNew / moved).toBeGreaterThanOrEqual(toNewAtLeast);
      // Ideal is 1/5 = 20%; a modulo hash would move ~80%.
      expect(moved / KEYS.length).toBeGreaterThan(0.1);
      expect(moved / KEYS.length).toBeLessThan(0.3);
    });

    it('sends keys of an unavailable or avoided endpoint elsewhere and back when it returns', () => {
      const eps = endpoints(3);
      const picker = make();
      const before = assign(picker, eps);
      const down = eps[1]!;
      const available = eps.filter((e) => e !== down);
      for (const k of KEYS.slice(0, 500)) {
        const chosen = picker.pick(available, { hashKey: k });
        expect(chosen).not.toBe(down);
        if (before.get(k) !== down) expect(chosen).toBe(before.get(k));
        expect(picker.pick(eps, { hashKey: k, avoid: before.get(k) })).not.toBe(before.get(k));
        expect(picker.pick(eps, { hashKey: k })).toBe(before.get(k));
      }
    });

    it('follows weights', () => {
      const eps = endpoints(2);
      (eps[0] as { endpoint: unknown }).endpoint = makeEndpoint({ address: '10.1.0.1', port: 9000, weight: 3 });
      const counts = new Map<EndpointState, number>();
      for (const ep of assign(make(), eps).values()) counts.set(ep, (counts.get(ep) ?? 0) + 1);
      const share = (counts.get(eps[0]!) ?? 0) / KEYS.length;
      expect(share).toBeGreaterThan(0.65);
      expect(share).toBeLessThan(0.85);
    });
  });
}

describe('sticky picker', () => {
  it('keeps the pinned endpoint while available and falls back otherwise', () => {
    const eps = endpoints(3);
    const picker = new StickyPicker(new RoundRobinPicker());
    picker.update(eps);
    const pinned = stickyId(eps[2]!);
    for (let i = 0; i < 5; i++) expect(picker.pick(eps, { pinned })).toBe(eps[2]);
    expect(picker.pick(eps.slice(0, 2), { pinned })).not.toBe(eps[2]);
    expect(picker.pick(eps, { pinned, avoid: eps[2] })).not.toBe(eps[2]);
    expect(eps).toContain(picker.pick(eps, { pinned: 'unknown' }));
  });
});
