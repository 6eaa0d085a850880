/**
 * L7 routing of one listener: an ordered route table compiled once per config. Each request (and each
 * Upgrade) is matched on path, host, method and headers, first match wins; the route picks its
 * upstream (or one of a weighted split), may rewrite the path prefix, and hands the request to a
 * handler built for that (route, upstream) pair, whose exchange carries the chosen cluster, so
 * retries, breakers and telemetry apply to it. No match: the listener's own upstream handler.
 *
 * Route-level layers (outermost first: route note, route timeout, fault injection) come from
 * `ROUTE_POLICIES`, the same factory-map pattern as the resilience chain.
 */
import { Buffer } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
import type { WireReply } from '../protocols/wire/reply.ts';
import type { WireRequest } from '../protocols/wire/server-connection.ts';
import type { Duplex } from 'node:stream';
import { meshError } from '../errors.ts';
import { abortWatchOf, exchangeWithSignal, type Forward, type ForwardLayer, type ProxyExchange, type UpstreamResponse } from '../protocols/exchange.ts';
import type { HttpHandler, UpgradeHandler } from '../protocols/upgrade.ts';
import { createFault } from '../resilience/fault.ts';
import type { RouteConfig, RouteMatchConfig } from './config.ts';

/** Note holding the name of the route that matched (telemetry labels, access log). */
export const ROUTE_NOTE = 'route';

/** A request as the matcher sees it. */
export interface RouteRequest {
  readonly method: string;
  /** Path without the query. */
  readonly path: string;
  /** Host without port, lower case ('' when absent). */
  readonly host: string;
  readonly headers: IncomingHttpHeaders;
}

type Predicate = (r: RouteRequest) => boolean;

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Compiles a route's match into one predicate (conditions left out cost nothing). */
export function compileMatch(match: RouteMatchConfig): Predicate {
  const checks: Predicate[] = [];
  if (match.prefix !== undefined) {
    const prefix = match.prefix;
    checks.push((r) => r.path.startsWith(prefix));
  }
  if (match.path !== undefined) {
    const path = match.path;
    checks.push((r) => r.path === path);
  }
  if (match.regex !== undefined) {
    const re = new RegExp(match.regex);
    checks.push((r) => re.test(r.path));
  }
  if (match.host !== undefined) {
    const host = match.host;
    if (host.startsWith('*.')) {
      const suffix = host.slice(1);
      checks.push((r) => r.host.endsWith(suffix) && r.host.length > suffix.length);
    } else checks.push((r) => r.host === host);
  }
  if (match.method !== undefined) {
    const methods = new Set((Array.isArray(match.method) ? match.method : [match.method]).map((m) => m.toUpperCase()));
    checks.push((r) => methods.has(r.method));
  }
  for (const h of match.headers) {
    const { name } = h;
    if (h.present !== undefined) {
      const present = h.present;
      checks.push((r) => (r.headers[name] !== undefined) === present);
    } else if (h.exact !== undefined) {
      const exact = h.exact;
      checks.push((r) => headerValue(r.headers, name) === exact);
    } else if (h.regex !== undefined) {
      const re = new RegExp(h.regex);
      checks.push((r) => {
        const v = headerValue(r.headers, name);
        return v !== undefined && re.test(v);
      });
    }
  }
  if (checks.length === 0) return () => true;
  return (r) => {
    for (const check of checks) if (!check(r)) return false;
    return true;
  };
}

/** Picks an index by weight: `random()` in [0, 1). Weights must not all be 0. */
export function weightedPick(weights: readonly number[], random: () => number): number {
  let total = 0;
  for (const w of weights) total += w;
  let point = random() * total;
  for (let i = 0; i < weights.length; i++) {
    point -= weights[i]!;
    if (point < 0) return i;
  }
  // Rounding at the very top end: the last share with weight.
  for (let i = weights.length - 1; i >= 0; i--) if (weights[i]! > 0) return i;
  return 0;
}

/**
 * The request's Host value. Read from the raw fields while the header object is not built: building it
 * to route would cost the exchange its relayed path (http1-exchange.ts). The server refuses repeated Hosts.
 */
export function hostField(req: WireRequest): string | undefined {
  const raw = req.untouchedRawHeaders;
  if (raw === undefined) return req.headers.host;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 4 && name.toLowerCase() === 'host') return raw[i + 1];
  }
  return undefined;
}

/** Host header without port, lower case; IPv6 literals keep their brackets. */
export function hostOf(value: string | undefined): string {
  if (!value) return '';
  const host = value.toLowerCase();
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

/** What the route layers of one route get. */
export interface RouteLayerContext {
  readonly route: RouteConfig;
  readonly name: string;
  readonly random?: (() => number) | undefined;
}

/** Route-level policies by name, outermost first in `ROUTE_ORDER`; undefined: left out of the chain. */
export const ROUTE_POLICIES = {
  note:
    ({ name }: RouteLayerContext): ForwardLayer =>
    (next) =>
    (x) => {
      x.notes.set(ROUTE_NOTE, name);
      return next(x);
    },
  timeout: ({ route, name }: RouteLayerContext): ForwardLayer | undefined => {
    const ms = route.timeout;
    return ms === undefined || ms === 0 ? undefined : (next) => createRouteTimeout(ms, name, next);
  },
  fault: ({ route, name, random }: RouteLayerContext): ForwardLayer | undefined => {
    const conf = route.fault;
    return conf && ((next) => createFault(conf, next, { route: name, random }));
  },
} as const;

export const ROUTE_ORDER: ReadonlyArray<keyof typeof ROUTE_POLICIES> = ['note', 'timeout', 'fault'];

/** The route's layers, outermost first. */
export function routeLayers(ctx: RouteLayerContext): ForwardLayer[] {
  return ROUTE_ORDER.flatMap((name) => ROUTE_POLICIES[name](ctx) ?? []);
}

/**
 * The route timeout bounds the whole exchange (every retry) until response headers: the layers below
 * see a copy of the exchange whose signal also fires at the deadline.
 */
function createRouteTimeout(ms: number, route: string, next: Forward): Forward {
  return async function routeTimeout(x: ProxyExchange): Promise<UpstreamResponse> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(meshError('UPSTREAM_TIMEOUT', `route ${route}: no response headers from ${x.cluster.name} within ${ms} ms`)), ms);
    // The client's abort is watched as the other layers watch it (abortWatchOf): no AbortSignal made for it.
    const clientAbort = abortWatchOf(x);
    const onAbort = () => controller.abort(clientAbort.reason);
    clientAbort.addEventListener('abort', onAbort);
    const view = exchangeWithSignal(x, controller.signal);
    try {
      return await next(view);
    } catch (err) {
      throw controller.signal.aborted && !clientAbort.aborted ? controller.signal.reason : err;
    } finally {
      clearTimeout(timer);
      clientAbort.removeEventListener('abort', onAbort);
      x.attempts = view.attempts;
      x.body = view.body;
    }
  };
}

/** A compiled route: its predicate, path rewrite and the handlers of its targets. */
interface CompiledRoute {
  readonly name: string;
  readonly matches: Predicate;
  readonly rewrite: ((path: string) => string) | undefined;
  readonly weights: readonly number[];
  readonly targets: readonly HttpHandler[];
}

export interface RouterOptions {
  /** The listener's upstream name (default route names: `<upstream>#<index>`). */
  readonly upstream: string;
  readonly routes: readonly RouteConfig[];
  /** Serves requests no route matched: the listener's own upstream. */
  readonly fallback: HttpHandler;
  /** Builds the handler sending a route's requests to `target` (an upstream name). */
  readonly handlerFor: (target: string, route: RouteConfig, name: string) => HttpHandler;
  readonly random?: () => number;
}

function compileRewrite(route: RouteConfig): ((path: string) => string) | undefined {
  const from = route.match.prefix;
  const to = route.rewrite?.prefix;
  if (from === undefined || to === undefined) return undefined;
  return (path) => {
    const rest = path.slice(from.length);
    return to.endsWith('/') && rest.startsWith('/') ? to + rest.slice(1) : to + rest;
  };
}

/** Builds a listener handler (requests and upgrades) that routes by the table. */
export function createRouter(options: RouterOptions): HttpHandler & { upgrade: UpgradeHandler } {
  const random = options.random ?? Math.random;
  const table: CompiledRoute[] = options.routes.map((route, i) => {
    const name = route.name ?? `${options.upstream}#${i}`;
    const split = route.split ?? [{ upstream: route.to!, weight: 1 }];
    return {
      name,
      matches: compileMatch(route.match),
      rewrite: compileRewrite(route),
      weights: split.map((s) => s.weight),
      targets: split.map((s) => options.handlerFor(s.upstream, route, name)),
    };
  });
  const { fallback } = options;

  /** The handler for `req`, with `req.url` rewritten when the route says so. */
  function select(req: WireRequest): HttpHandler {
    let target = req.url ?? '/';
    let hostHeader = hostField(req);
    // Absolute-form (HTTP proxy clients): the target's host is the request's host.
    if (target.charCodeAt(0) !== 47 /* '/' */ && /^https?:\/\//i.test(target) && URL.canParse(target)) {
      const url = new URL(target);
      hostHeader = url.host;
      req.headers.host = url.host;
      target = `${url.pathname}${url.search}`;
      req.url = target;
    }
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    // Headers only for a route that matches on them.
    const request: RouteRequest = {
      method: req.method ?? 'GET',
      path,
      host: hostOf(hostHeader),
      get headers() {
        return req.headers;
      },
    };
    for (const route of table) {
      if (!route.matches(request)) continue;
      if (route.rewrite) req.url = route.rewrite(path) + (q === -1 ? '' : target.slice(q));
      const i = route.targets.length === 1 ? 0 : weightedPick(route.weights, random);
      return route.targets[i]!;
    }
    return fallback;
  }

  const handler = (req: WireRequest, res: WireReply) => select(req)(req, res);
  const upgrade: UpgradeHandler = (req: WireRequest, socket: Duplex, head: Buffer) => {
    const target = select(req);
    if (target.upgrade) target.upgrade(req, socket, head);
    else socket.destroy();
  };
  return Object.assign(handler, { upgrade });
}
