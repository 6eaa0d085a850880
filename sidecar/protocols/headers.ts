import type { IncomingHttpHeaders } from 'node:http';

/** Headers that describe one connection, not the message; a proxy must not forward them (RFC 9110 7.6.1). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);

export type HeaderMap = Record<string, string | string[]>;

/** What `Connection: close` lists, shared: every request or response that ends its connection carries it. */
const CLOSE_ONLY: ReadonlySet<string> = new Set(['close']);

/** Names listed in a Connection header are hop-by-hop too. */
function connectionListed(value: string | string[] | undefined): ReadonlySet<string> | undefined {
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

/** Lengths of the names relayedFieldLines must look at: a field of any other length is relayed without lowercasing it. */
const NOTABLE_LENGTH = new Uint8Array(32);
for (const name of [...HOP_BY_HOP, 'content-length', 'via']) NOTABLE_LENGTH[name.length] = 1;

/** What relayedFieldLines found (one object, reused: it is read at once by the caller). */
export interface RelayedFields {
  /** `name: value\r\n` per end-to-end field, in the order and case received, then one Via line. */
  lines: string;
  hasContentLength: boolean;
}

const relayed: RelayedFields = { lines: '', hasContentLength: false };

/**
 * The end-to-end fields of a received head (raw name/value pairs) as header lines, hop-by-hop ones
 * dropped and `via` appended to the received Via values (one line, as the header-object path writes
 * it): endToEndHeaders + Via + serializing, without the object in between. Undefined when a Connection
 * field names further fields to drop (rare): the caller takes the header-object path then.
 */
export function relayedFieldLines(raw: readonly string[], via: string): RelayedFields | undefined {
  let lines = '';
  let hasContentLength = false;
  let priorVia = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (NOTABLE_LENGTH[name.length] === 1) {
      const lower = name.toLowerCase();
      if (lower === 'content-length') hasContentLength = true;
      else if (lower === 'via') {
        priorVia += `${value}, `;
        continue;
      } else if (HOP_BY_HOP.has(lower)) {
        const listed = lower === 'connection' ? connectionListed(value) : undefined;
        if (listed !== undefined && listed !== CLOSE_ONLY) return undefined;
        continue;
      }
    }
    lines += `${name}: ${value}\r\n`;
  }
  relayed.lines = `${lines}via: ${priorVia}${via}\r\n`;
  relayed.hasContentLength = hasContentLength;
  return relayed;
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

/** Adds x-forwarded-for/-proto/-host, forwarded and via for a request leaving through this proxy. */
export function addForwardingHeaders(headers: HeaderMap, facts: ForwardingFacts): void {
  if (facts.clientAddress) appendListHeader(headers, 'x-forwarded-for', facts.clientAddress);
  // Keep the proto and host the first proxy saw: they describe the original request.
  if (headers['x-forwarded-proto'] === undefined) headers['x-forwarded-proto'] = facts.proto;
  if (headers['x-forwarded-host'] === undefined && facts.host) headers['x-forwarded-host'] = facts.host;
  let element = `proto=${facts.proto}`;
  if (facts.clientAddress) element = `for=${forwardedNode(facts.clientAddress)};${element}`;
  if (facts.host) element += `;host="${facts.host.replace(/["\\]/g, '')}"`;
  appendListHeader(headers, 'forwarded', element);
  appendListHeader(headers, 'via', facts.via);
}

/** The path without its query string: what logs, spans and tap show, since queries may carry tokens. */
export function pathWithoutQuery(path: string): string {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
}
