import type { IncomingHttpHeaders } from 'node:http';

/** Headers that describe one connection, not the message; a proxy must not forward them (RFC 9110 7.6.1). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);

export type HeaderMap = Record<string, string | string[]>;

/** What `Connection: close` lists, shared: every request or response that ends its connection carries it. */
export const CLOSE_ONLY: ReadonlySet<string> = new Set(['close']);

/** Names listed in a Connection header are hop-by-hop too (undefined: none beyond the usual ones; CLOSE_ONLY: just `close`). */
export function connectionListed(value: string | string[] | undefined): ReadonlySet<string> | undefined {
  if (!value) return undefined;
  // The values nearly every message carries ("keep-alive", "upgrade", "close") need no parse.
  if (typeof value === 'string' && value.length < 16) {
    const lower = value.toLowerCase();
    if (HOP_BY_HOP.has(lower)) return undefined;
    if (lower === 'close') return CLOSE_ONLY;
  }
  const text = Array.isArray(value) ? value.join(',') : value;
  const names = new Set<string>();
  for (const part of text.split(',')) {
    const name = part.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names.size > 0 ? names : undefined;
}

/**
 * Copies end-to-end headers, dropping hop-by-hop ones, those named in `Connection`, and HTTP/2
 * pseudo-headers (`:path`, `:status`...: they describe one HTTP/2 message, never a header to relay).
 */
export function endToEndHeaders(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): HeaderMap {
  const listed = connectionListed(headers.connection);
  const out: HeaderMap = {};
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || name.charCodeAt(0) === 58 /* ':' */ || HOP_BY_HOP.has(name) || listed?.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/**
 * Drops hop-by-hop headers from `headers` itself: for a header object the caller owns (a response the
 * wire pool just parsed), where a copy would be garbage on every request.
 */
export function stripHopByHop(headers: Record<string, string | string[] | undefined>): void {
  const listed = connectionListed(headers.connection);
  for (const name in headers) if (HOP_BY_HOP.has(name) || listed?.has(name)) delete headers[name];
}

/** Appends a value to a possibly repeated header, comma-joined as RFC 9110 allows for list headers. */
export function appendListHeader(headers: HeaderMap, name: string, value: string): void {
  const prior = headers[name];
  headers[name] = prior === undefined ? value : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${value}`;
}

/** Quotes an address for the Forwarded header when it needs it (IPv6, RFC 7239 section 6). */
function forwardedNode(address: string): string {
  return address.includes(':') ? `"[${address}]"` : address;
}

export interface ForwardingFacts {
  readonly clientAddress: string | undefined;
  readonly proto: 'http' | 'https';
  readonly host: string | undefined;
  /** Value added to Via, e.g. `1.1 meshlet`. */
  readonly via: string;
}

/** What a hop adds besides the host, which a relay reads from the request itself. */
export type HopFacts = Omit<ForwardingFacts, 'host'>;

/** Adds x-forwarded-for/-proto/-host, forwarded and via for a request leaving through this proxy. */
export function addForwardingHeaders(headers: HeaderMap, facts: ForwardingFacts): void {
  if (facts.clientAddress) appendListHeader(headers, 'x-forwarded-for', facts.clientAddress);
  // Keep the proto and host the first proxy saw: they describe the original request.
  if (headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = facts.proto;
  if (headers['x-forwarded-host'] === undefined && facts.host) headers['x-forwarded-host'] = facts.host;
  appendListHeader(headers, 'forwarded', forwardedElement(facts));
  appendListHeader(headers, 'via', facts.via);
}

/** This hop's element of the Forwarded header (RFC 7239): `for=...;proto=...;host="..."`. */
export function forwardedElement(facts: ForwardingFacts): string {
  let element = `proto=${facts.proto}`;
  if (facts.clientAddress) element = `for=${forwardedNode(facts.clientAddress)};${element}`;
  if (facts.host) element += `;host="${withoutQuoteChars(facts.host)}"`;
  return element;
}

/** The host without `"` and `\\` (a quoted-string may not hold them bare); the search skips the regex for the usual host. */
function withoutQuoteChars(host: string): string {
  return host.includes('"') || host.includes('\\') ? host.replace(/["\\]/g, '') : host;
}

/** The path without its query string: what logs, spans and tap show, since queries may carry tokens. */
export function pathWithoutQuery(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}
