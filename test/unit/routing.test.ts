import { afterEach, describe, expect, it, vi } from 'vitest';
import { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { isMeshError } from '../../sidecar/errors.ts';
import type { ProxyExchange, UpstreamResponse } from '../../sidecar/protocols/exchange.ts';
import { createFault } from '../../sidecar/resilience/fault.ts';
import { routeSchema, routingIssues } from '../../sidecar/routing/config.ts';
import { compileMatch, hostField, hostOf, routeLayers, weightedPick, type RouteRequest } from '../../sidecar/routing/router.ts';
import { ParsedRequest } from '../../sidecar/protocols/wire/request.ts';

const req = (over: Partial<RouteRequest> = {}): RouteRequest => ({ method: 'GET', path: '/', host: '', headers: {}, ...over });
const match = (m: unknown) => compileMatch(routeSchema.parse({ match: m, to: 'x' }).match);

describe('route matching', () => {
  it('an empty match matches everything', () => {
    expect(match({})(req({ path: '/anything', method: 'DELETE' }))).toBe(true);
  });

  it('all conditions must hold', () => {
    const m = match({ prefix: '/api', method: 'post', host: 'shop.test', headers: [{ name: 'X-Env', exact: 'canary' }] });
    const ok = req({ path: '/api/x', method: 'POST', host: 'shop.test', headers: { 'x-env': 'canary' } });
    expect(m(ok)).toBe(true);
    expect(m({ ...ok, path: '/apx' })).toBe(false);
    expect(m({ ...ok, method: 'GET' })).toBe(false);
    expect(m({ ...ok, host: 'other.test' })).toBe(false);
    expect(m({ ...ok, headers: { 'x-env': 'prod' } })).toBe(false);
    expect(m({ ...ok, headers: {} })).toBe(false);
  });

  it('wildcard hosts match subdomains only; header present/absent and regex', () => {
    const wild = match({ host: '*.example.com' });
    expect(wild(req({ host: 'a.example.com' }))).toBe(true);
    expect(wild(req({ host: 'a.b.example.com' }))).toBe(true);
    expect(wild(req({ host: 'example.com' }))).toBe(false);
    expect(wild(req({ host: 'badexample.com' }))).toBe(false);
    expect(match({ headers: [{ name: 'x-a', present: false }] })(req({ headers: { 'x-a': '1' } }))).toBe(false);
    expect(match({ headers: [{ name: 'x-a', present: false }] })(req())).toBe(true);
    expect(match({ headers: [{ name: 'x-v', regex: '^v[23]$' }] })(req({ headers: { 'x-v': 'v3' } }))).toBe(true);
    expect(match({ headers: [{ name: 'x-v', regex: '^v[23]$' }] })(req({ headers: { 'x-v': 'v4' } }))).toBe(false);
  });

  it('reads Host from the raw fields without building the header object, which would cost the request its relayed path', () => {
    const req = new ParsedRequest('GET', '/', '1.1', ['X-A', '1', 'HOST', 'Greeter:8080'], new Socket(), null);
    expect(hostField(req)).toBe('Greeter:8080');
    expect(req.untouchedRawHeaders).toBeDefined();
    expect(hostField(new ParsedRequest('GET', '/', '1.0', ['X-A', '1'], new Socket(), null))).toBeUndefined();
    // Once built (and maybe edited by the edge or an absolute-form target), the object is what counts.
    req.headers.host = 'edited';
    expect(hostField(req)).toBe('edited');
  });

  it('hostOf strips the port, lower-cases, keeps IPv6 brackets', () => {
    expect(hostOf('Greeter:8080')).toBe('greeter');
    expect(hostOf('[::1]:80')).toBe('[::1]');
    expect(hostOf(undefined)).toBe('');
  });
});

describe('weighted pick', () => {
  it('maps [0,1) onto cumulative weights, skipping zero weights', () => {
    expect(weightedPick([90, 10], () => 0)).toBe(0);
    expect(weightedPick([90, 10], () => 0.899)).toBe(0);
    expect(weightedPick([90, 10], () => 0.9)).toBe(1);
    expect(weightedPick([90, 10], () => 0.999999)).toBe(1);
    expect(weightedPick([0, 5, 0], () => 0)).toBe(1);
    expect(weightedPick([0, 5, 0], () => 0.9999999)).toBe(1);
  });
});

describe('route config checks', () => {
  it('names routes that point at unknown or TCP upstreams, and routes on TCP listeners', () => {
    const route = (to: string) => routeSchema.parse({ match: {}, to });
    expect(routingIssues([{ name: 'a', protocol: 'http', routes: [route('a'), route('b'), route('db')] }, { name: 'db', protocol: 'tcp' }], 'f')).toEqual([
      'upstreams[0].routes[1].to: no upstream named "b", got "b" (f)',
      'upstreams[0].routes[2].to: routes can only send to HTTP upstreams, got "db" (protocol tcp) (f)',
    ]);
    expect(routingIssues([{ name: 'db', protocol: 'tcp', routes: [route('db')] }], 'f')).toEqual(['upstreams[0].routes: applies to HTTP upstreams only, got protocol "tcp" (f)']);
  });

  it('parses route timeouts as durations', () => {
    expect(routeSchema.parse({ match: {}, to: 'a', timeout: '250ms' }).timeout).toBe(250);
    expect(routeSchema.safeParse({ match: {}, to: 'a', timeout: 'soon' }).success).toBe(false);
  });
});

function exchange(): ProxyExchange {
  return { notes: new Map(), signal: new AbortController().signal, tried: [], attempts: 0 } as unknown as ProxyExchange;
}
const ok: UpstreamResponse = { statusCode: 200, headers: {}, body: Readable.from([]), endpoint: undefined as never };

describe('fault injection layer', () => {
  afterEach(() => vi.useRealTimers());

  it('aborts when the roll falls under the share, with the configured status, never calling next', async () => {
    const next = vi.fn(async () => ok);
    const rolls = [0.29, 0.31];
    const fault = createFault({ abort: { percent: 30, status: 429 } }, next, { route: 'r', random: () => rolls.shift()! });
    const err = await fault(exchange()).catch((e: unknown) => e);
    expect(isMeshError(err, 'FAULT_INJECTED')).toBe(true);
    expect(err).toMatchObject({ status: 429, reason: 'fault_injected' });
    expect(next).not.toHaveBeenCalled();
    await expect(fault(exchange())).resolves.toBe(ok);
    expect(next).toHaveBeenCalledTimes(1);
  });

  it('delays the share for the configured time, then forwards', async () => {
    vi.useFakeTimers();
    const next = vi.fn(async () => ok);
    const fault = createFault({ delay: { percent: 50, duration: 1000 } }, next, { route: 'r', random: () => 0.1 });
    const x = exchange();
    const done = fault(x);
    await vi.advanceTimersByTimeAsync(999);
    expect(next).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    await expect(done).resolves.toBe(ok);
    expect(x.notes.get('fault')).toBe('delay');
  });

  it('a fault of 0 percent is no layer at all', () => {
    const next = async () => ok;
    expect(createFault({ abort: { percent: 0, status: 503 } }, next, { route: 'r' })).toBe(next);
  });

  it('route layers: note always, timeout and fault only when configured', () => {
    expect(routeLayers({ route: routeSchema.parse({ match: {}, to: 'a' }), name: 'n' })).toHaveLength(1);
    expect(routeLayers({ route: routeSchema.parse({ match: {}, to: 'a', timeout: '1s', fault: { abort: { percent: 1 } } }), name: 'n' })).toHaveLength(3);
  });
});
