/**
 * Config of L7 routing: per-listener `routes` (match -> upstream or weighted split, rewrite, timeout,
 * fault injection) and the host-routing HTTP proxy listener. Cross-field rules (upstreams a route names
 * must exist and speak HTTP) are in `routingIssues`, run by the loader.
 */
import { z } from 'zod';
import { duration, durationValue } from '../config/duration.ts';
import { host, listenPort, serviceName } from '../config/fields.ts';

export const DEFAULT_PROXY_ADDRESS = '127.0.0.1';
export const MAX_SPLIT_WEIGHT = 10_000;

/** A regular expression given as a string; compiled here so a bad one names its field. */
const regex = (why: string) =>
  z
    .string()
    .min(1)
    .refine((s) => {
      try {
        new RegExp(s);
        return true;
      } catch {
        return false;
      }
    }, { error: 'expected a valid regular expression' })
    .describe(why);

export const headerMatchSchema = z
  .strictObject({
    name: z.string().min(1).toLowerCase().describe('Header name (case-insensitive)'),
    exact: z.string().optional().describe('The header value equals this'),
    regex: regex('The header value matches this regular expression').optional(),
    present: z.boolean().optional().describe('true: the header is present; false: it is absent'),
  })
  .refine((h) => [h.exact, h.regex, h.present].filter((v) => v !== undefined).length === 1, { error: 'give exactly one of exact, regex or present' })
  .describe('One header condition');

export const routeMatchSchema = z
  .strictObject({
    prefix: z.string().startsWith('/').optional().describe('Path starts with this (e.g. /api)'),
    path: z.string().startsWith('/').optional().describe('Path (without query) equals this'),
    regex: regex('Path (without query) matches this regular expression').optional(),
    host: z.string().min(1).toLowerCase().optional().describe('Host header without port equals this; "*.example.com" matches any subdomain'),
    method: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional().describe('Method or list of methods'),
    headers: z.array(headerMatchSchema).default([]).describe('Header conditions, all must hold'),
  })
  .refine((m) => [m.prefix, m.path, m.regex].filter((v) => v !== undefined).length <= 1, { error: 'give at most one of prefix, path or regex' })
  .prefault({})
  .describe('Conditions, all must hold; an empty match matches every request');

export const faultSchema = z
  .strictObject({
    delay: z
      .strictObject({
        percent: z.number().min(0).max(100).describe('Share of requests delayed, 0-100'),
        duration: duration(0, 'How long a delayed request waits before being forwarded'),
      })
      .optional()
      .describe('Delay a share of requests'),
    abort: z
      .strictObject({
        percent: z.number().min(0).max(100).describe('Share of requests answered with `status` by the proxy, 0-100'),
        status: z.int().min(200).max(599).default(503).describe('Status of an aborted request (default 503)'),
      })
      .optional()
      .describe('Answer a share of requests with an error, never forwarding them'),
  })
  .describe('Fault injection (chaos testing): aborted responses carry x-meshlet-error: fault_injected');

export const splitSchema = z
  .strictObject({
    upstream: serviceName().describe('Upstream (by name) receiving this share'),
    weight: z.int().min(0).max(MAX_SPLIT_WEIGHT).describe(`Relative weight, 0-${MAX_SPLIT_WEIGHT}`),
  })
  .describe('One share of a weighted split');

export const routeSchema = z
  .strictObject({
    name: z.string().min(1).optional().describe('Name shown in telemetry (default "<upstream>#<index>")'),
    match: routeMatchSchema,
    to: serviceName().optional().describe('Upstream (by name) that serves matching requests'),
    split: z.array(splitSchema).min(1).optional().describe('Weighted split across upstreams (canary), e.g. 90/10'),
    rewrite: z
      .strictObject({ prefix: z.string().startsWith('/').describe('Replaces the matched `match.prefix` in the path') })
      .optional()
      .describe('Path rewrite before forwarding'),
    timeout: durationValue()
      .optional()
      .describe('Time allowed until response headers for this route, overriding the upstream request timeout; 0 disables'),
    fault: faultSchema.optional(),
  })
  .refine((r) => (r.to === undefined) !== (r.split === undefined), { error: 'give exactly one of `to` or `split`' })
  .refine((r) => r.split === undefined || r.split.some((s) => s.weight > 0), { error: 'a split needs some weight above 0', path: ['split'] })
  .refine((r) => r.rewrite === undefined || r.match.prefix !== undefined, { error: 'rewrite.prefix needs match.prefix', path: ['rewrite'] })
  .describe('One route: first match wins; no match goes to the listener upstream');

export const routesSchema = z.array(routeSchema).optional().describe('Ordered L7 routes of this listener (HTTP only); unmatched requests go to this upstream');

export const proxyListenerSchema = z
  .strictObject({
    address: host().default(DEFAULT_PROXY_ADDRESS).describe(`Address of the HTTP proxy listener (default ${DEFAULT_PROXY_ADDRESS})`),
    port: listenPort().describe('Port of the HTTP proxy listener: the app sets HTTP_PROXY to it or sends any request with Host: <upstream>'),
  })
  .optional()
  .describe('Host-routing outbound HTTP proxy: Host "greeter" or "greeter:port" goes to upstream greeter (through its routes)');

export type RouteConfig = z.infer<typeof routeSchema>;
export type RouteMatchConfig = z.infer<typeof routeMatchSchema>;
export type FaultConfig = z.infer<typeof faultSchema>;
export type ProxyListenerConfig = z.infer<typeof proxyListenerSchema>;

interface RoutedUpstream {
  readonly name: string;
  readonly protocol: string;
  readonly routes?: readonly RouteConfig[] | undefined;
}

/** Problems with the routes of every upstream: named upstreams must exist and speak HTTP. */
export function routingIssues(upstreams: readonly RoutedUpstream[], source: string): string[] {
  const protocols = new Map(upstreams.map((u) => [u.name, u.protocol]));
  const problems: string[] = [];
  upstreams.forEach((upstream, i) => {
    if (!upstream.routes) return;
    if (upstream.protocol !== 'http') {
      problems.push(`upstreams[${i}].routes: applies to HTTP upstreams only, got protocol "${upstream.protocol}" (${source})`);
      return;
    }
    upstream.routes.forEach((route, j) => {
      const targets = route.to !== undefined ? [{ field: 'to', name: route.to }] : (route.split ?? []).map((s, k) => ({ field: `split[${k}].upstream`, name: s.upstream }));
      for (const { field, name } of targets) {
        const protocol = protocols.get(name);
        const at = `upstreams[${i}].routes[${j}].${field}`;
        if (protocol === undefined) problems.push(`${at}: no upstream named "${name}", got "${name}" (${source})`);
        else if (protocol !== 'http') problems.push(`${at}: routes can only send to HTTP upstreams, got "${name}" (protocol ${protocol}) (${source})`);
      }
    });
  });
  return problems;
}
