import { describe, expect, it } from 'vitest';
import { EndpointState } from '../../sidecar/cluster/endpoint-state.ts';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';
import { P2cEwmaPicker } from '../../sidecar/balancer/p2c-ewma.ts';
import { currentLatency, DEFAULT_RTT_MS, peakEwma, recordLatency } from '../../sidecar/balancer/peak-ewma.ts';
import { RandomPicker } from '../../sidecar/balancer/random.ts';

function endpoints(n: number): EndpointState[] {
  return Array.from({ length: n }, (_, i) => new EndpointState(makeEndpoint({ address: '10.2.0.1', port: 7000 + i })));
}

describe('peak EWMA', () => {
  it('jumps to a higher sample and decays slowly towards lower ones', () => {
    expect(peakEwma(0, 0, 40, 10_000)).toBe(40);
    expect(peakEwma(40, 100, 400, 10_000)).toBe(400);
    const after1s = peakEwma(400, 1000, 10, 10_000);
    expect(after1s).toBeGreaterThan(350);
    expect(after1s).toBeLessThan(400);
    expect(peakEwma(400, 100_000, 10, 10_000)).toBeCloseTo(10, 0);
  });

  it('decays a stale high estimate towards the default RTT so the endpoint is tried again', () => {
    const [ep] = endpoints(1);
    expect(currentLatency(ep!, 0)).toBe(DEFAULT_RTT_MS);
    recordLatency(ep!, 1000, 0);
    expect(currentLatency(ep!, 0)).toBe(1000);
    expect(currentLatency(ep!, 60_000)).toBeLessThan(DEFAULT_RTT_MS + 5);
  });
});

describe('P2C peak-EWMA picker', () => {
  it('prefers the endpoint with lower latency x load, and never the avoided one', () => {
    const eps = endpoints(2);
    const t = 0;
    const picker = new P2cEwmaPicker(undefined, () => t);
    recordLatency(eps[0]!, 200, 0);
    recordLatency(eps[1]!, 20, 0);
    for (let i = 0; i < 50; i++) expect(picker.pick(eps, {})).toBe(eps[1]);
    eps[1]!.active = 20;
    expect(picker.pick(eps, {})).toBe(eps[0]);
    expect(picker.pick(eps, { avoid: eps[0] })).toBe(eps[1]);
  });
});

describe('random picker', () => {
  it('follows weights and skips the avoided endpoint', () => {
    const eps = endpoints(3);
    let n = 0;
    const picker = new RandomPicker((max) => n++ % max);
    const seen = new Set(Array.from({ length: 30 }, () => picker.pick(eps, { avoid: eps[0] })));
    expect(seen.has(eps[0]!)).toBe(false);
    expect(seen.size).toBe(2);
  });
});
