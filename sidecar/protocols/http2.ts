/**
 * The HTTP/2 (and gRPC) request path: the same ProxyExchange and layers as HTTP/1.1 (retries, breakers,
 * authorization, telemetry observers), forwarded over HTTP/2 sessions (h2-forward.ts), with what HTTP/2
 * and gRPC add: response trailers, trailers-only responses, full-duplex bodies, `grpc-timeout` as the
 * deadline, and proxy-made failures answered as gRPC statuses (grpc.ts) on gRPC calls.
 *
 * Served through node:http2's compatibility API, so one handler also answers HTTP/1.1 clients of an
 * `allowHTTP1` TLS listener (those get plain HTTP errors and no trailers).
 */
import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { Readable, Writable } from 'node:stream';
import { MeshletError, meshError } from '../errors.ts';
import type { Logger } from '../telemetry/logger.ts';
import { composeLayers, type ExchangeObserver, type ExchangeOutcome, type ForwardLayer, type ProxyExchange, type UpstreamResponse } from './exchange.ts';
import { GRPC_STATUS_NOTE, grpcErrorHeaders, grpcStatusOf, isGrpcRequest, parseGrpcTimeout } from './grpc.ts';
import { createH2Forward, isH2Response } from './h2-forward.ts';
import { addForwardingHeaders, endToEndHeaders, stripHopByHop, type HeaderMap } from './headers.ts';
import { streamBody } from './pump.ts';
import { respondWithError, upstreamError } from './respond.ts';

export interface Http2ProxyOptions {
  readonly cluster: import('../cluster/cluster.ts').Cluster;
  readonly clientProto: 'http' | 'https';
  /** `grpc`: every request is a gRPC call; `http2`: those with a gRPC content-type are. */
  readonly protocol: 'http2' | 'grpc';
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly poolIdleMs: number;
  readonly layers?: readonly ForwardLayer[];
  readonly observers?: readonly ExchangeObserver[];
  readonly log: Logger;
}

/** Note set on exchanges whose body is a live stream that must not be buffered (see resilience/retry.ts). */
export const STREAMING_BODY_NOTE = 'protocol.streamingBody';

type Req = Http2ServerRequest | IncomingMessage;
type Res = Http2ServerResponse | ServerResponse;

function isHttp2(req: Req): req is Http2ServerRequest {
  return req.httpVersion === '2.0';
}

function hasBody(req: Req): boolean {
  if (isHttp2(req)) return !req.stream.endAfterHeaders;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Response headers for the client: the upstream's end-to-end ones plus our Via, edited in place
 * (h2-forward's own copy, which holds no undefined values).
 */
function clientHeaders(response: Record<string, string | string[] | undefined>, via: string): HeaderMap {
  stripHopByHop(response);
  const upstream = response as HeaderMap;
  const prior = upstream.via;
  upstream.via = prior === undefined ? via : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${via}`;
  return upstream;
}

/** Where a response's 'close' listener (one module function, called with the response as `this`) finds the exchange's controller. */
const kClient = Symbol('meshlet.clientAbort');
type ClientTracked = Res & { [kClient]: AbortController | undefined };

/**
 * The client went away before its response finished: stop the upstream work too. 'close' is the
 * response's last event, so the slot is emptied: node:http2 keeps a finished stream's objects alive
 * through scavenges until a full GC, and the controller leads to the whole exchange.
 */
function onClientClose(this: ClientTracked): void {
  const client = this[kClient];
  this[kClient] = undefined;
  // A client's RST_STREAM can leave the compat response claiming writableFinished: the code tells.
  const stream = (this as Http2ServerResponse).stream as Http2ServerResponse['stream'] | undefined;
  const reset = stream !== undefined && (stream.rstCode ?? 0) !== constants.NGHTTP2_NO_ERROR;
  if (reset || !this.writableFinished) client?.abort(meshError('UPSTREAM_RESET', 'client closed the stream'));
}

/** Builds the `(req, res)` handler of an HTTP/2 listener proxying to `options.cluster`. */
export function createHttp2Proxy(options: Http2ProxyOptions): (req: Req, res: Res) => void {
  const innermost = createH2Forward({ requestMs: options.requestTimeoutMs, idleMs: options.idleTimeoutMs }, { connectTimeoutMs: options.connectTimeoutMs, idleMs: options.poolIdleMs });
  const forward = composeLayers(options.layers ?? [], innermost);
  const observers = options.observers ?? [];
  const { cluster, clientProto, log } = options;

  return function proxyHttp2(req, res) {
    const h2 = isHttp2(req);
    const via = h2 ? '2 meshlet' : '1.1 meshlet';
    const grpc = options.protocol === 'grpc' || isGrpcRequest(req.headers['content-type']);
    const client = new AbortController();
    (res as ClientTracked)[kClient] = client;
    res.on('close', onClientClose);
    const headers = endToEndHeaders(req.headers);
    const authority = (req.headers[':authority'] as string | undefined) ?? req.headers.host;
    if (authority !== undefined) headers.host = authority;
    // `te: trailers` is the one TE HTTP/2 allows, and gRPC servers require it.
    if (/\btrailers\b/i.test(String(req.headers.te ?? ''))) headers.te = 'trailers';
    addForwardingHeaders(headers, { clientAddress: req.socket.remoteAddress, proto: clientProto, host: authority, via });
    // gRPC deadline: the call fails with DEADLINE_EXCEEDED when it is not over in time, wherever it is.
    const deadlineMs = grpc ? parseGrpcTimeout(req.headers['grpc-timeout']) : undefined;
    // Only calls that carry a deadline get its controller and timer.
    const deadline = deadlineMs === undefined ? undefined : new AbortController();
    const timer = deadline === undefined ? undefined : setTimeout(() => deadline.abort(meshError('UPSTREAM_TIMEOUT', `deadline of ${deadlineMs} ms (grpc-timeout) exceeded calling upstream "${cluster.name}"`)), deadlineMs);
    const body = hasBody(req) ? req : null;
    const exchange: ProxyExchange = {
      req: req as IncomingMessage,
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers,
      body,
      cluster,
      signal: deadline === undefined ? client.signal : AbortSignal.any([client.signal, deadline.signal]),
      tried: [],
      attempts: 0,
      startedAt: performance.now(),
      notes: new Map(),
    };
    // A body may stream on for the whole call (gRPC client and bidirectional streams): never buffer it.
    if (body !== null && h2) exchange.notes.set(STREAMING_BODY_NOTE, true);
    const done = run(exchange, req, res, grpc, via, client.signal).catch(reportBug);
    if (timer !== undefined) void done.finally(() => clearTimeout(timer));
  };

  // Never let a bug in a layer or observer become an unhandled rejection (that would end the process).
  function reportBug(err: unknown): void {
    log.error({ err, upstream: cluster.name }, 'proxy bug');
  }

  async function run(x: ProxyExchange, req: Req, res: Res, grpc: boolean, via: string, clientGone: AbortSignal): Promise<void> {
    let error: MeshletError | undefined;
    let upstream: UpstreamResponse | undefined;
    const socket = req.socket;
    const readAtStart = socket.bytesRead ?? 0;
    const writtenAtStart = socket.bytesWritten ?? 0;
    try {
      for (const o of observers) o.onStart?.(x);
      upstream = await forward(x);
      if (grpc) noteGrpcStatus(x, upstream);
      const trailed = { seen: false };
      if (writeResponse(req, res, upstream, clientHeaders(upstream.headers, via), trailed)) upstream.body.resume();
      // h2-forward answers with streams only (the raw HTTP/1.1 pool body never reaches this proxy).
      else if (grpc && isHttp2(req)) await relay(upstream.body as Readable, res as Http2ServerResponse, trailed);
      else await streamBody(upstream.body, res as ServerResponse);
    } catch (err) {
      if (upstream && !upstream.body.destroyed) upstream.body.destroy();
      error = clientGone.aborted && !res.headersSent ? undefined : toMeshError(err, x);
      if (error && grpc) x.notes.set(GRPC_STATUS_NOTE, grpcStatusOf(error));
      if (error && !clientGone.aborted) respondError(req, res, error, grpc);
      else if (!res.destroyed && !res.writableFinished) res.destroy();
      if (error && error.status >= 500) log.debug({ err: error, upstream: cluster.name }, 'proxy error');
    }
    if (observers.length === 0) return;
    const outcome: ExchangeOutcome = {
      status: res.headersSent ? res.statusCode : 0,
      error: error ? { code: error.code, reason: error.reason, message: error.message } : undefined,
      endpoint: upstream?.endpoint ?? x.tried[x.tried.length - 1],
      // Per connection for HTTP/2 (streams share it): an approximation when calls run concurrently.
      bytesIn: Math.max(0, (socket.bytesRead ?? 0) - readAtStart),
      bytesOut: Math.max(0, (socket.bytesWritten ?? 0) - writtenAtStart),
      durationMs: performance.now() - x.startedAt,
    };
    for (const o of observers) o.onEnd?.(x, outcome);
  }
}

/** Leaves the app's grpc-status (trailers-only headers, or trailers when they come) in the notes. */
function noteGrpcStatus(x: ProxyExchange, upstream: UpstreamResponse): void {
  const inHeaders = upstream.headers['grpc-status'];
  if (inHeaders !== undefined) x.notes.set(GRPC_STATUS_NOTE, Number(inHeaders));
  if (!isH2Response(upstream)) return;
  upstream.onTrailers((trailers) => {
    if (trailers['grpc-status'] !== undefined) x.notes.set(GRPC_STATUS_NOTE, Number(trailers['grpc-status']));
  });
}

/**
 * Writes the response head; a trailers-only response (headers with END_STREAM) stays one, and then
 * resolves true: the response is complete.
 */
function writeResponse(req: Req, res: Res, upstream: UpstreamResponse, headers: HeaderMap, trailed: { seen: boolean }): boolean {
  if (isH2Response(upstream)) {
    if (upstream.headersOnly && isHttp2(req)) {
      (res as Http2ServerResponse).stream.respond({ ...headers, ':status': upstream.statusCode }, { endStream: true });
      return true;
    }
    if (isHttp2(req)) {
      upstream.onTrailers((trailers) => {
        trailed.seen = true;
        (res as Http2ServerResponse).addTrailers(endToEndHeaders(trailers));
      });
    }
  }
  (res as ServerResponse).writeHead(upstream.statusCode, headers);
  return false;
}

/**
 * Streams a gRPC response body to the client. Unlike pump, an upstream failure leaves the client's
 * stream open, so the failure can still be reported as a grpc-status in trailers. A gRPC response
 * that ends without trailers (no grpc-status) was cut short, whatever the stream says.
 */
function relay(src: Readable, dst: Http2ServerResponse, trailed: { seen: boolean }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      src.unpipe(dst as unknown as Writable);
      if (err) reject(err);
      else resolve();
    };
    src.on('error', () => {});
    src.once('end', () => {
      if (!trailed.seen) {
        settle(Object.assign(new Error('upstream ended the gRPC response without trailers (no grpc-status)'), { code: 'ECONNRESET' }));
        return;
      }
      dst.end();
      settle();
    });
    src.once('close', () => {
      if (!src.readableEnded) settle(src.errored ?? Object.assign(new Error('upstream stream closed before its end'), { code: 'ECONNRESET' }));
    });
    // The client's stream closing before the upstream's ended: the client cancelled.
    dst.once('close', () => {
      if (settled) return;
      src.destroy();
      settle(Object.assign(new Error('client closed the stream'), { code: 'ECONNRESET' }));
    });
    src.pipe(dst as unknown as Writable, { end: false });
  });
}

/**
 * Proxy-made failures: a gRPC call gets HTTP 200 with grpc-status / grpc-message (in trailers once the
 * response started), so gRPC clients see a status code; other requests get the usual JSON error.
 */
function respondError(req: Req, res: Res, err: MeshletError, grpc: boolean): void {
  if (!grpc || !isHttp2(req)) {
    respondWithError(res as ServerResponse, err);
    return;
  }
  const h2res = res as Http2ServerResponse;
  const status = grpcErrorHeaders(err);
  if (!h2res.headersSent) {
    if (h2res.stream.destroyed) return;
    h2res.stream.respond({ ':status': 200, 'content-type': 'application/grpc', ...status }, { endStream: true });
    return;
  }
  if (h2res.writableEnded || h2res.stream.destroyed) {
    if (!h2res.stream.destroyed) h2res.stream.close();
    return;
  }
  // The response started: end it with the failure as trailers, the gRPC way.
  h2res.addTrailers(status);
  h2res.end();
}

function toMeshError(err: unknown, x: ProxyExchange): MeshletError {
  if (err instanceof MeshletError) return err;
  const last = x.tried[x.tried.length - 1];
  return upstreamError(err, last ? `${x.cluster.name}@${last.key}` : x.cluster.name);
}
