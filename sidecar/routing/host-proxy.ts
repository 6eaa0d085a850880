/**
 * The host-routing HTTP proxy listener: the app sets HTTP_PROXY to it (absolute-form requests) or sends
 * ordinary requests with `Host: <upstream>`; each request goes to the named upstream exactly as if the
 * app had called that upstream's local port (its routes, layers and timeouts apply). Upgrades too.
 */
import { Buffer } from 'node:buffer';
import type { WireReply } from '../protocols/wire/reply.ts';
import type { WireRequest } from '../protocols/wire/server-connection.ts';
import type { Duplex } from 'node:stream';
import { meshError } from '../errors.ts';
import { respondWithError } from '../protocols/respond.ts';
import { writeRawError, type HttpHandler, type UpgradeHandler } from '../protocols/upgrade.ts';
import { hostField, hostOf } from './router.ts';

/** The current request handler of an upstream's listener, or undefined when no HTTP upstream has that name. */
export type UpstreamLookup = (name: string) => HttpHandler | undefined;

function targetHost(req: WireRequest): string {
  const url = req.url ?? '/';
  if (url.charCodeAt(0) !== 47 /* '/' */ && /^https?:\/\//i.test(url) && URL.canParse(url)) return hostOf(new URL(url).host);
  return hostOf(hostField(req));
}

function unknownHost(host: string, listener: string) {
  return meshError('NO_HEALTHY_ENDPOINT', host === '' ? `request without a Host on ${listener}: name the upstream in Host` : `no HTTP upstream for Host "${host}" on ${listener}`);
}

/** Builds the proxy listener's handler (requests and upgrades). */
export function createHostProxy(lookup: UpstreamLookup, listener = 'proxy'): HttpHandler & { upgrade: UpgradeHandler } {
  const handler = (req: WireRequest, res: WireReply) => {
    const host = targetHost(req);
    const target = host === '' ? undefined : lookup(host);
    if (target) return target(req, res);
    req.body?.resume();
    respondWithError(res, unknownHost(host, listener));
  };
  const upgrade: UpgradeHandler = (req: WireRequest, socket: Duplex, head: Buffer) => {
    const host = targetHost(req);
    const target = host === '' ? undefined : lookup(host);
    if (target?.upgrade) return target.upgrade(req, socket, head);
    writeRawError(socket, unknownHost(host, listener));
  };
  return Object.assign(handler, { upgrade });
}
