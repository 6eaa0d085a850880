import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { stickyId } from '../../sidecar/balancer/sticky.ts';
import { hashPolicySchema, stickySchema } from '../../sidecar/balancer/hash-config.ts';
import { EndpointState } from '../../sidecar/cluster/endpoint-state.ts';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';
import type { ProxyExchange, UpstreamResponse } from '../../sidecar/protocols/exchange.ts';
import { createHashKey, createSticky, readCookie } from '../../sidecar/resilience/affinity.ts';

const endpoint = new EndpointState(makeEndpoint({ address: '10.0.0.7', port: 8080 }));

/** The parts of an exchange the affinity layers read. */
function exchange(headers: Record<string, string>, remoteAddress = '192.0.2.1'): ProxyExchange {
  return { headers, notes: new Map(), req: { socket: { remoteAddress } } } as unknown as ProxyExchange;
}

const answer = async (): Promise<UpstreamResponse> => ({ statusCode: 200, headers: { 'set-cookie': 'app=1' }, body: Readable.from([]), endpoint });

describe('readCookie', () => {
  it('finds a cookie among others, trimmed, and not by prefix', () => {
    expect(readCookie('a=1; srv=abc ;b=2', 'srv')).toBe('abc');
    expect(readCookie(['a=1', 'srv=x'], 'srv')).toBe('x');
    expect(readCookie('srvx=1; xsrv=2', 'srv')).toBeUndefined();
    expect(readCookie(undefined, 'srv')).toBeUndefined();
  });
});

describe('hash key layer', () => {
  it('takes the key from a header, a cookie or the source IP', async () => {
    for (const [conf, headers, key] of [
      [{ source: 'header', name: 'X-User' }, { 'x-user': 'u1' }, 'u1'],
      [{ source: 'cookie', name: 'session' }, { cookie: 'theme=dark; session=s9' }, 's9'],
      [{ source: 'source_ip' }, {}, '192.0.2.1'],
      [{ source: 'header', name: 'x-user' }, {}, undefined],
    ] as const) {
      const x = exchange({ ...headers });
      await createHashKey(hashPolicySchema.parse(conf), answer)(x);
      expect(x.notes.get('hashKey')).toBe(key);
    }
  });
});

describe('sticky layer', () => {
  it('pins a new client with a cookie carrying the attributes, next to the app cookies', async () => {
    const x = exchange({});
    const res = await createSticky(stickySchema.parse({ cookie: 'srv', maxAge: '1h', secure: true }), answer)(x);
    expect(x.notes.has('stickyEndpoint')).toBe(false);
    expect(res.headers['set-cookie']).toEqual(['app=1', `srv=${stickyId(endpoint)}; Path=/; HttpOnly; SameSite=Lax; Max-Age=3600; Secure`]);
  });

  it('passes the pinned id to the picker and sets no cookie when the pin held', async () => {
    const x = exchange({ cookie: `srv=${stickyId(endpoint)}` });
    const res = await createSticky(stickySchema.parse({ cookie: 'srv' }), answer)(x);
    expect(x.notes.get('stickyEndpoint')).toBe(stickyId(endpoint));
    expect(res.headers['set-cookie']).toBe('app=1');
  });
});
