/**
 * The innermost step for HTTP/2 and gRPC upstreams: pick an endpoint, open a stream on its HTTP/2
 * session, stream the request body while the response streams back (full duplex, as gRPC
 * bidirectional calls need), resolve when response headers arrive. Response trailers and
 * trailers-only responses are surfaced on the returned H2UpstreamResponse.
 */
import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import { meshError } from '../errors.ts';
import type { Forward, ProxyExchange, UpstreamResponse } from './exchange.ts';
import { pickForAttempt, type ForwardTimeouts } from './forward.ts';
import { h2SessionsFor, type H2SessionOptions } from './h2-sessions.ts';
import { upstreamError } from './respond.ts';

/** An upstream HTTP/2 response: `headersOnly` when it ended with its headers (gRPC trailers-only). */
export interface H2UpstreamResponse extends UpstreamResponse {
  readonly headersOnly: boolean;
  /** Calls `listener` with the response trailers, if any arrive (before the body ends). */
  onTrailers(listener: (trailers: Record<string, string | string[]>) => void): void;
}

export function isH2Response(response: UpstreamResponse): response is H2UpstreamResponse {
  return typeof (response as Partial<H2UpstreamResponse>).onTrailers === 'function';
}

/** Drops HTTP/2 pseudo-headers (`:status`, `:path`...) from a header block. */
export function withoutPseudoHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (name.charCodeAt(0) === 58 /* ':' */ || value === undefined) continue;
    out[name] = value;
  }
  return out;
}

/** Streams a client body into the upstream stream without letting either end tear down the other. */
function sendBody(body: Readable, stream: ClientHttp2Stream): void {
  body.pipe(stream);
  body.once('error', () => stream.close(constants.NGHTTP2_CANCEL));
  // The upstream finished first (a server may answer before the client stops sending): discard the rest.
  stream.once('close', () => {
    body.unpipe(stream);
    if (!body.readableEnded && !body.destroyed) body.resume();
  });
}

export function createH2Forward(timeouts: ForwardTimeouts, sessionOptions: H2SessionOptions): Forward {
  return async function forwardH2(x: ProxyExchange): Promise<UpstreamResponse> {
    const state = pickForAttempt(x);
    const peer = `${x.cluster.name}@${state.key}`;
    state.active++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      state.active--;
    };
    let stream: ClientHttp2Stream | undefined;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      if (x.signal.aborted) throw x.signal.reason;
      // The body is only touched once the session is up: a connect failure leaves it intact for a retry.
      const { session, tls } = await h2SessionsFor(x.cluster, sessionOptions).get(state);
      if (x.signal.aborted) throw x.signal.reason;
      const { host, ...rest } = x.headers;
      const headers: OutgoingHttpHeaders = {
        ...rest,
        ':method': x.method,
        ':path': x.path,
        ':scheme': tls ? 'https' : 'http',
        ':authority': typeof host === 'string' ? host : state.key,
      };
      const s = session.request(headers, { endStream: x.body === null });
      stream = s;
      // One listener per event for the stream's whole life, switching on `settled` (the head arrived,
      // or the attempt failed), rather than listeners swapped at the head.
      let settled = false;
      let resolveHead!: (response: UpstreamResponse) => void;
      let rejectHead!: (err: Error) => void;
      const head = new Promise<UpstreamResponse>((resolve, reject) => {
        resolveHead = resolve;
        rejectHead = reject;
      });
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (!s.destroyed) s.close(constants.NGHTTP2_CANCEL);
        rejectHead(upstreamError(err, peer));
      };
      // Before the head the client leaving fails the attempt; after it, it cancels the stream and
      // pumping the body reports it.
      const abort = () => (settled ? s.destroy(upstreamError(x.signal.reason, peer)) : fail(x.signal.reason));
      onAbort = abort;
      x.signal.addEventListener('abort', abort, { once: true });
      // Errors after the head reach whoever reads the body (it checks `errored`); never an unhandled 'error'.
      s.on('error', fail);
      s.once('close', () => {
        release();
        x.signal.removeEventListener('abort', abort);
        // The Error (and its stack) only when the stream really closed before its head.
        if (!settled) fail(Object.assign(new Error(`stream closed before response headers (HTTP/2 code ${s.rstCode ?? '?'})`), { code: 'ECONNRESET' }));
      });
      if (timeouts.requestMs > 0) timer = setTimeout(() => fail(meshError('UPSTREAM_TIMEOUT', `${peer} sent no response headers within ${timeouts.requestMs} ms`)), timeouts.requestMs);
      s.once('response', (responseHeaders, flags) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (timeouts.idleMs > 0) s.setTimeout(timeouts.idleMs, () => s.destroy(meshError('UPSTREAM_TIMEOUT', `${peer} sent nothing for ${timeouts.idleMs} ms`)));
        const response: H2UpstreamResponse = {
          statusCode: Number(responseHeaders[':status']),
          headers: withoutPseudoHeaders(responseHeaders),
          body: s,
          endpoint: state,
          headersOnly: (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0,
          onTrailers: (listener) => s.once('trailers', (trailers: IncomingHttpHeaders) => listener(withoutPseudoHeaders(trailers))),
        };
        resolveHead(response);
      });
      if (Buffer.isBuffer(x.body)) s.end(x.body);
      else if (x.body) sendBody(x.body, s);
      return await head;
    } catch (err) {
      clearTimeout(timer);
      if (onAbort) x.signal.removeEventListener('abort', onAbort);
      if (!stream) release();
      throw upstreamError(err, peer);
    }
  };
}
