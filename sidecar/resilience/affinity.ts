/**
 * Request affinity: computes the hash key for ring_hash/maglev (header, cookie or source IP, stored in
 * `notes.hashKey`), and runs sticky sessions: the pinned endpoint id from the cookie goes to
 * `notes.stickyEndpoint` for the picker, and a response from another endpoint re-pins the client
 * with a Set-Cookie.
 */
import type { HashPolicyConfig, StickyConfig } from '../balancer/hash-config.ts';
import { stickyId } from '../balancer/sticky.ts';
import type { Forward, ProxyExchange, UpstreamResponse } from '../protocols/exchange.ts';

/** Value of cookie `name` in a Cookie header, if present. */
export function readCookie(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header.join('; ') : header;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Builds the hash-key layer: sets `notes.hashKey` from the configured source. */
export function createHashKey(conf: HashPolicyConfig, next: Forward): Forward {
  const name = conf.name?.toLowerCase() ?? '';
  const keyOf: (x: ProxyExchange) => string | undefined =
    conf.source === 'header'
      ? (x) => {
          const v = x.headers[name];
          return Array.isArray(v) ? v.join(',') : v;
        }
      : conf.source === 'cookie'
        ? (x) => readCookie(x.headers.cookie, conf.name!)
        : (x) => x.req.socket.remoteAddress;
  return function hashKey(x: ProxyExchange): Promise<UpstreamResponse> {
    const key = keyOf(x);
    if (key !== undefined) x.notes.set('hashKey', key);
    return next(x);
  };
}

/** Builds the sticky-session layer. */
export function createSticky(conf: StickyConfig, next: Forward): Forward {
  const attributes = `; Path=/; HttpOnly; SameSite=Lax${conf.maxAge > 0 ? `; Max-Age=${Math.ceil(conf.maxAge / 1000)}` : ''}${conf.secure ? '; Secure' : ''}`;
  return async function sticky(x: ProxyExchange): Promise<UpstreamResponse> {
    const pinned = readCookie(x.headers.cookie, conf.cookie);
    if (pinned !== undefined) x.notes.set('stickyEndpoint', pinned);
    const response = await next(x);
    const id = stickyId(response.endpoint);
    if (id !== pinned) {
      const cookie = `${conf.cookie}=${id}${attributes}`;
      const prior = response.headers['set-cookie'];
      response.headers['set-cookie'] = prior === undefined ? cookie : [...(Array.isArray(prior) ? prior : [prior]), cookie];
    }
    return response;
  };
}
