/**
 * Keeps web pages away from the admin API. Admin binds to loopback, but a browser on the same machine
 * can still be steered at it: by DNS rebinding (a hostile name resolving to 127.0.0.1, seen in the Host
 * header) and by cross-site requests that change state (POST /shutdown from any page, seen in Origin).
 * Tools (curl, sidecars, Prometheus) send neither a foreign Host nor an Origin, so they are unaffected.
 */
import type { IncomingHttpHeaders } from 'node:http';

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\]|\[::ffff:127(?:\.\d{1,3}){3}\])$/i;
const READ_ONLY = new Set(['GET', 'HEAD', 'OPTIONS']);

function hostname(hostHeader: string): string {
  // Strip the port: "[::1]:15000" -> "[::1]", "localhost:15000" -> "localhost".
  const match = /^(\[[^\]]*\]|[^:]*)(?::\d+)?$/.exec(hostHeader.trim());
  return match ? match[1]! : hostHeader;
}

/** Why a request must be refused, or undefined when it may proceed. */
export function browserGuardRefusal(method: string | undefined, headers: IncomingHttpHeaders, loopbackOnly: boolean): string | undefined {
  const host = headers.host;
  if (loopbackOnly && host !== undefined && !LOOPBACK_HOST.test(hostname(host))) {
    return `Host "${host}" is not a loopback name; the admin API answers only to localhost, 127.0.0.1 or [::1]`;
  }
  const origin = headers.origin;
  if (origin !== undefined && !READ_ONLY.has(method ?? 'GET')) {
    let originHost: string | undefined;
    try {
      originHost = new URL(origin).host;
    } catch {
      originHost = undefined;
    }
    if (originHost !== host) return `cross-origin ${method} from ${origin} refused`;
  }
  return undefined;
}
