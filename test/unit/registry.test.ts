import { describe, expect, it } from 'vitest';
import { EndpointRegistry } from '../../sidecar/discovery/registry.ts';
import { makeEndpoint, type Endpoint } from '../../sidecar/discovery/types.ts';
import { silentLogger } from '../../sidecar/telemetry/logger.ts';

const ep = (port: number, weight = 1) => makeEndpoint({ address: '10.0.0.1', port, weight });
const keys = (eps: readonly Endpoint[]) => eps.map((e) => e.key);

describe('endpoint registry', () => {
  it('merges providers per service, first provider winning on a shared key, sorted by key', () => {
    const registry = new EndpointRegistry(silentLogger());
    registry.apply({ provider: 'static', services: new Map([['greeter', [ep(2, 5)]]]) });
    registry.apply({ provider: 'file', services: new Map([['greeter', [ep(1), ep(2, 9)]]]) });
    expect(keys(registry.endpoints('greeter'))).toEqual(['10.0.0.1:1', '10.0.0.1:2']);
    expect(registry.endpoints('greeter').find((e) => e.port === 2)!.weight).toBe(5);
  });

  it('notifies subscribers only when a service really changed', () => {
    const registry = new EndpointRegistry(silentLogger());
    const seen: string[][] = [];
    registry.subscribe('greeter', (eps) => seen.push(keys(eps)));
    registry.apply({ provider: 'file', services: new Map([['greeter', [ep(1)]]]) });
    registry.apply({ provider: 'file', services: new Map([['greeter', [ep(1)]], ['other', [ep(9)]]]) });
    registry.apply({ provider: 'file', services: new Map([['greeter', [ep(1, 3)]]]) });
    expect(seen).toEqual([['10.0.0.1:1'], ['10.0.0.1:1']]);
    registry.apply({ provider: 'file', services: new Map() });
    expect(seen.at(-1)).toEqual([]);
  });

  it('tells "known with no endpoints" from "never reported"', () => {
    const registry = new EndpointRegistry(silentLogger());
    const calls: number[] = [];
    registry.subscribe('greeter', (eps) => calls.push(eps.length));
    registry.apply({ provider: 'file', services: new Map([['other', [ep(1)]]]) });
    expect(calls).toEqual([]); // greeter never reported: subscribers stay silent
    registry.apply({ provider: 'file', services: new Map([['greeter', []]]) });
    expect(calls).toEqual([0]);
    registry.apply({ provider: 'file', services: new Map([['greeter', []]]) });
    expect(calls).toEqual([0]); // unchanged: no repeat
    // A late subscriber of a known service hears its current state at once.
    const late: number[] = [];
    registry.subscribe('greeter', (eps) => late.push(eps.length));
    expect(late).toEqual([0]);
  });

  it('unsubscribes', () => {
    const registry = new EndpointRegistry(silentLogger());
    const calls: number[] = [];
    const off = registry.subscribe('greeter', (eps) => calls.push(eps.length));
    off();
    registry.apply({ provider: 'file', services: new Map([['greeter', [ep(1)]]]) });
    expect(calls).toEqual([]);
  });
});
