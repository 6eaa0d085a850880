/**
 * The HTTP/1.1 request path, top to bottom: build the exchange from the client's request, run it
 * through the layers down to an endpoint, stream the response back, report the outcome.
 */
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import { MeshletError, meshError } from '../errors.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { Logger } from '../telemetry/logger.ts';
import { abortWatchOf, composeLayers, type ExchangeObserver, type ExchangeOutcome, type ForwardLayer, type ProxyExchange } from './exchange.ts';
import { ExchangeAbort } from './exchange-abort.ts';
import { createEndpointForward } from './forward.ts';
import { stripHopByHop } from './headers.ts';
import { Http1Exchange } from './http1-exchange.ts';
import { relayedResponseFields } from './relayed-fields.ts';
import { streamBody } from './pump.ts';
import { respondWithError, upstreamError } from './respond.ts';
import type { WireReply } from './wire/reply.ts';
import type { WireRequest } from './wire/server-connection.ts';

export interface HttpProxyOptions {
  readonly cluster: Cluster;
  /** `https` when the client reached us over TLS (inbound mTLS). */
  readonly clientProto: 'http' | 'https';
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly layers?: readonly ForwardLayer[];
  readonly observers?: readonly ExchangeObserver[];
  readonly log: Logger;
}

const VIA = '1.1 meshlet';

/** Response headers to send to the client: the upstream's end-to-end ones plus our Via, edited in place (the pool's own object). */
function clientHeaders(upstream: Record<string, string | string[] | undefined>): Record<string, string | string[] | undefined> {
  stripHopByHop(upstream);
  const via = upstream.via;
  upstream.via = via === undefined ? VIA : `${Array.isArray(via) ? via.join(', ') : via}, ${VIA}`;
  return upstream;
}

/** Builds the `(req, res)` handler that proxies to `options.cluster`. */
export function createHttpProxy(options: HttpProxyOptions): (req: WireRequest, res: WireReply) => void {
  const forward = composeLayers(options.layers ?? [], createEndpointForward({ requestMs: options.requestTimeoutMs, idleMs: options.idleTimeoutMs }));
  const observers = options.observers ?? [];
  const { cluster, clientProto, log } = options;

  return function proxyHttp(req, res) {
    const abort = new ExchangeAbort();
    const socket = req.socket;
    // The client leaving before the response completed must stop the upstream work too.
    res.abortWhenAbandoned = abort;
    let path = req.url ?? '/';
    let targetHost: string | undefined;
    // Absolute-form (`GET http://host/p`, from apps using us as an HTTP proxy) leaves as origin-form,
    // with Host taken from the target as RFC 9112 3.2.2 requires.
    if (path.charCodeAt(0) !== 47 /* '/' */) {
      const origin = originForm(path);
      if (origin !== undefined) ({ path, host: targetHost } = origin);
    }
    if (path.charCodeAt(0) !== 47 /* '/' */) {
      // Asterisk-form (`OPTIONS *`) and authority-form (CONNECT) are not forwarded: answer for ourselves.
      req.body?.resume();
      respondWithError(res, meshError('BAD_REQUEST', `request target "${path.slice(0, 100)}" cannot be forwarded to upstream "${cluster.name}": only origin-form and http(s) absolute-form targets are`));
      return;
    }
    const exchange = new Http1Exchange(req, path, cluster, abort, { clientAddress: socket.remoteAddress, proto: clientProto, via: VIA }, targetHost);
    // Never let a bug in a layer or observer become an unhandled rejection (that would end the process).
    run(exchange, res, socket, socket.bytesRead).catch((err: unknown) => log.error({ err, upstream: cluster.name }, 'proxy bug'));
  };

  /**
   * Bytes in: the socket's read counter at the start is subtracted at the end. Bytes out: the reply's own
   * count (net's bytesWritten walks the socket's write queue, an array and an iterator per call).
   */
  async function run(x: ProxyExchange, res: WireReply, socket: Socket, readAtStart: number): Promise<void> {
    let error: MeshletError | undefined;
    let endpoint;
    let upstream;
    try {
      // Inside the try: an observer that throws fails this exchange, not the process.
      for (const o of observers) o.onStart?.(x);
      upstream = await forward(x);
      endpoint = upstream.endpoint;
      // Fields nobody read or edited leave as received (the common case); else through the header object.
      const raw = upstream.untouchedRawHeaders;
      const relayed = raw === undefined ? undefined : relayedResponseFields(raw, VIA);
      if (relayed !== undefined) res.writeRelayedHead(upstream.statusCode, relayed.lines, relayed.hasContentLength);
      else res.writeHead(upstream.statusCode, clientHeaders(upstream.headers));
      await streamBody(upstream.body, res);
    } catch (err) {
      // A response head node:http refuses to write (e.g. invalid header bytes) leaves the body unread.
      if (upstream && !upstream.body.destroyed) upstream.body.destroy();
      const aborted = abortWatchOf(x).aborted;
      error = aborted && !res.headersSent ? undefined : toMeshError(err, x);
      if (error && !aborted) respondWithError(res, error);
      else if (!res.destroyed && !res.writableFinished) res.destroy();
      if (error && error.status >= 500) log.debug({ err: error, upstream: cluster.name }, 'proxy error');
    }
    if (observers.length === 0) return;
    const outcome: ExchangeOutcome = {
      status: res.headersSent ? res.statusCode : 0,
      error: error ? { code: error.code, reason: error.reason, message: error.message } : undefined,
      endpoint: endpoint ?? x.tried[x.tried.length - 1],
      bytesIn: socket.bytesRead - readAtStart,
      bytesOut: res.bytesWritten,
      durationMs: performance.now() - x.startedAt,
    };
    for (const o of observers) o.onEnd?.(x, outcome);
  }
}

/** The origin-form path and host of an http(s) absolute-form target; undefined for other forms (they fail as bad requests). */
function originForm(target: string): { path: string; host: string } | undefined {
  if (!/^https?:\/\//i.test(target) || !URL.canParse(target)) return undefined;
  const url = new URL(target);
  return { path: `${url.pathname}${url.search}`, host: url.host };
}

function toMeshError(err: unknown, x: ProxyExchange): MeshletError {
  if (err instanceof MeshletError) return err;
  const last = x.tried[x.tried.length - 1];
  return upstreamError(err, last ? `${x.cluster.name}@${last.key}` : x.cluster.name);
}
