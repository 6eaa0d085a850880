import { describe, expect, it } from 'vitest';
import { createPicker } from '../../sidecar/balancer/index.ts';
import { LeastRequestPicker } from '../../sidecar/balancer/least-request.ts';
import { RoundRobinPicker } from '../../sidecar/balancer/round-robin.ts';
import type { Picker, RandomInt } from '../../sidecar/balancer/types.ts';
import { EndpointState } from '../../sidecar/cluster/endpoint-state.ts';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';

function endpoints(...weights: number[]): EndpointState[] {
  return weights.map((weight, i) => new EndpointState(makeEndpoint({ address: `10.0.0.${i + 1}`, port: 80, weight })));
}

/** Picks `n` times and returns the picked addresses' last octet letters a, b, c... in order. */
function sequence(picker: Picker, eps: EndpointState[], n: number): string {
  picker.update(eps);
  let out = '';
  for (let i = 0; i < n; i++) out += String.fromCharCode(96 + eps.indexOf(picker.pick(eps, {})) + 1);
  return out;
}

function counts(picker: Picker, eps: EndpointState[], n: number, avoid?: EndpointState): number[] {
  picker.update(eps);
  const seen = eps.map(() => 0);
  for (let i = 0; i < n; i++) seen[eps.indexOf(picker.pick(eps, { avoid }))]!++;
  return seen;
}

/** A seeded generator (mulberry32) so distribution tests are repeatable. */
function seededRandom(seed: number): RandomInt {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

describe('round robin (smooth weighted)', () => {
  it('cycles through equal endpoints in order', () => {
    expect(sequence(new RoundRobinPicker(), endpoints(1, 1, 1), 9)).toBe('abcabcabc');
  });

  it('spreads weights 5:1:1 smoothly rather than in bursts', () => {
    const seq = sequence(new RoundRobinPicker(), endpoints(5, 1, 1), 14);
    expect(seq).toBe('aabacaaaabacaa');
    // Never more than the heavy endpoint's weight in a row, and b/c are not adjacent to each other.
    expect(seq).not.toMatch(/a{6}|bc|cb/);
  });

  it('matches the weights exactly over whole cycles', () => {
    expect(counts(new RoundRobinPicker(), endpoints(5, 1, 1), 700)).toEqual([500, 100, 100]);
    expect(counts(new RoundRobinPicker(), endpoints(3, 2), 500)).toEqual([300, 200]);
  });

  it('honours `avoid` (a retry goes elsewhere) while keeping other endpoints in rotation', () => {
    const eps = endpoints(1, 1, 1);
    const seen = counts(new RoundRobinPicker(), eps, 300, eps[0]);
    expect(seen[0]).toBe(0);
    expect(seen[1]! + seen[2]!).toBe(300);
    expect(Math.abs(seen[1]! - seen[2]!)).toBeLessThanOrEqual(1);
  });

  it('still answers with the only endpoint when it is the one to avoid', () => {
    const eps = endpoints(1);
    expect(new RoundRobinPicker().pick(eps, { avoid: eps[0] })).toBe(eps[0]);
  });
});

describe('least request (power of two choices)', () => {
  it('prefers the less loaded of the two sampled endpoints', () => {
    const eps = endpoints(1, 1);
    eps[0]!.active = 5;
    // Whatever the sample order, a (5 in flight) loses to b (0 in flight).
    for (const first of [0, 1]) {
      const picker = new LeastRequestPicker(() => first);
      expect(picker.pick(eps, {})).toBe(eps[1]);
    }
  });

  it('sends most traffic away from a loaded endpoint over many picks', () => {
    const eps = endpoints(1, 1, 1);
    eps[0]!.active = 10;
    eps[1]!.active = 10;
    const seen = counts(new LeastRequestPicker(seededRandom(7)), eps, 3000);
    // c is picked whenever it is sampled: in 2 of every 3 pairs.
    expect(seen[2]! / 3000).toBeGreaterThan(0.6);
    expect(seen[2]).toBeGreaterThan(seen[0]! + seen[1]!);
  });

  it('respects weights when load is equal', () => {
    const seen = counts(new LeastRequestPicker(seededRandom(42)), endpoints(5, 1, 1), 14_000);
    // On a load tie the first (weight-proportional) sample wins, so shares follow weights: 5/7, 1/7, 1/7.
    expect(seen[0]! / 14_000).toBeGreaterThan(0.68);
    expect(seen[0]! / 14_000).toBeLessThan(0.75);
    expect(seen[1]! / seen[2]!).toBeGreaterThan(0.85);
    expect(seen[1]! / seen[2]!).toBeLessThan(1.15);
  });

  it('weighs load by weight: a heavy endpoint may carry more in flight', () => {
    const eps = endpoints(4, 1);
    eps[0]!.active = 3; // (3+1)/4 = 1 per unit of weight
    eps[1]!.active = 1; // (1+1)/1 = 2
    expect(new LeastRequestPicker(() => 0).pick(eps, {})).toBe(eps[0]);
  });

  it('honours `avoid`', () => {
    const eps = endpoints(1, 1, 1);
    eps[1]!.active = 100;
    const seen = counts(new LeastRequestPicker(seededRandom(3)), eps, 600, eps[2]);
    expect(seen[2]).toBe(0);
    expect(seen[0]! + seen[1]!).toBe(600);
  });

  it('picks the only endpoint, even when it is the one to avoid', () => {
    const eps = endpoints(1);
    expect(new LeastRequestPicker().pick(eps, { avoid: eps[0] })).toBe(eps[0]);
  });
});

describe('createPicker', () => {
  it('builds the balancer named in config', () => {
    expect(createPicker('round_robin')).toBeInstanceOf(RoundRobinPicker);
    expect(createPicker('least_request')).toBeInstanceOf(LeastRequestPicker);
  });
});
