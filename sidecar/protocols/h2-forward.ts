/**
 * The innermost step for HTTP/2 and gRPC upstreams: pick an endpoint, open a stream on its HTTP/2
 * session, stream the request body while the response streams back (full duplex, as gRPC
 * bidirectional calls need), resolve when response headers arrive. Response trailers and
 * trailers-only responses are surfaced on the returned H2UpstreamResponse.
 */
import { Buffer } from 'node:buffer';
import { constants, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { Readable } from 'node:stream';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import { meshError } from '../errors.ts';
import type { Forward, ProxyExchange, UpstreamResponse } from './exchange.ts';
import { pickForAttempt, type ForwardTimeouts } from './forward.ts';
import { h2SessionsFor, type H2Connection, type H2SessionOptions } from './h2-sessions.ts';
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

/** Where a stream's listeners (module functions, called with the stream as `this`) find their attempt. */
const kAttempt = Symbol('meshlet.h2Attempt');
type AttemptStream = ClientHttp2Stream & { [kAttempt]: H2Attempt | undefined };

/**
 * One attempt on one upstream stream, and once its head arrived, the response: a single object per
 * request instead of a closure per listener (the HTTP/2 path's allocations are mostly node:http2's,
 * what is left of ours should not add to them). Listens to the client going away with one function,
 * not with itself as an EventListener object (`handleEvent`): Node's wrapper for those kept each request
 * alive until a full GC (see the wire pool's PendingRequest.onAbort).
 */
class H2Attempt implements H2UpstreamResponse {
  // Set when the head arrives (the promise resolves with this object only then).
  statusCode = 0;
  headers!: Record<string, string | string[]>;
  headersOnly = false;
  readonly body: AttemptStream;
  readonly endpoint: EndpointState;
  readonly head: Promise<UpstreamResponse>;
  readonly #x: ProxyExchange;
  readonly #peer: string;
  readonly #idleMs: number;
  /** The head arrived or the attempt failed: later events only concern whoever reads the body. */
  #settled = false;
  #timer: NodeJS.Timeout | undefined;
  #trailerListeners: ((trailers: Record<string, string | string[]>) => void)[] | null = null;
  #resolve!: (response: UpstreamResponse) => void;
  #reject!: (err: Error) => void;

  constructor(x: ProxyExchange, stream: ClientHttp2Stream, endpoint: EndpointState, peer: string, timeouts: ForwardTimeouts) {
    this.#x = x;
    this.#peer = peer;
    this.#idleMs = timeouts.idleMs;
    this.endpoint = endpoint;
    this.head = new Promise<UpstreamResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    const s = stream as AttemptStream;
    s[kAttempt] = this;
    this.body = s;
    // One listener per event for the stream's whole life, switching on #settled.
    x.signal.addEventListener('abort', this.#onAbort);
    // Errors after the head reach whoever reads the body (it checks `errored`); never an unhandled 'error'.
    s.on('error', onStreamError);
    s.on('close', onStreamClose);
    s.on('response', onStreamResponse);
    if (timeouts.requestMs > 0) this.#timer = setTimeout(onHeadTimeout, timeouts.requestMs, this, timeouts.requestMs);
  }

  /** The exchange's signal: before the head the client leaving fails the attempt; after it, it cancels the stream and pumping the body reports it. */
  readonly #onAbort = (): void => {
    const reason = this.#x.signal.reason as unknown;
    if (this.#settled) this.body.destroy(upstreamError(reason, this.#peer));
    else this.fail(reason);
  };

  fail(err: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    if (!this.body.destroyed) this.body.close(constants.NGHTTP2_CANCEL);
    this.#reject(upstreamError(err, this.#peer));
  }

  response(headers: IncomingHttpHeaders, flags: number): void {
    if (this.#settled) return;
    this.#settled = true;
    clearTimeout(this.#timer);
    const s = this.body;
    if (this.#idleMs > 0) s.setTimeout(this.#idleMs, onBodyIdle);
    this.statusCode = Number(headers[':status']);
    this.headers = withoutPseudoHeaders(headers);
    this.headersOnly = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    this.#resolve(this);
  }

  closed(): void {
    this.endpoint.active--;
    this.#x.signal.removeEventListener('abort', this.#onAbort);
    // The Error (and its stack) only when the stream really closed before its head.
    if (!this.#settled) this.fail(Object.assign(new Error(`stream closed before response headers (HTTP/2 code ${this.body.rstCode ?? '?'})`), { code: 'ECONNRESET' }));
  }

  headTimedOut(ms: number): void {
    this.fail(meshError('UPSTREAM_TIMEOUT', `${this.#peer} sent no response headers within ${ms} ms`));
  }

  bodyIdle(): void {
    this.body.destroy(meshError('UPSTREAM_TIMEOUT', `${this.#peer} sent nothing for ${this.#idleMs} ms`));
  }

  onTrailers(listener: (trailers: Record<string, string | string[]>) => void): void {
    if (this.#trailerListeners === null) {
      this.#trailerListeners = [];
      this.body.on('trailers', onStreamTrailers);
    }
    this.#trailerListeners.push(listener);
  }

  trailers(trailers: IncomingHttpHeaders): void {
    const clean = withoutPseudoHeaders(trailers);
    for (const listener of this.#trailerListeners ?? []) listener(clean);
  }
}

function onStreamError(this: AttemptStream, err: Error): void {
  this[kAttempt]?.fail(err);
}

/**
 * 'close' is a stream's last event: the attempt is done with it, so the stream lets go of the attempt
 * (and through it the exchange, the client's request and response). node:http2 keeps a closed stream's
 * objects alive through scavenges until a full GC; what they point to would be kept as long.
 */
function onStreamClose(this: AttemptStream): void {
  const attempt = this[kAttempt];
  this[kAttempt] = undefined;
  attempt?.closed();
}

function onStreamResponse(this: AttemptStream, headers: IncomingHttpHeaders, flags: number): void {
  this[kAttempt]?.response(headers, flags);
}

function onStreamTrailers(this: AttemptStream, trailers: IncomingHttpHeaders): void {
  this[kAttempt]?.trailers(trailers);
}

/** http2 stream timeouts call back with the stream as `this`. */
function onBodyIdle(this: AttemptStream): void {
  this[kAttempt]?.bodyIdle();
}

function onHeadTimeout(attempt: H2Attempt, ms: number): void {
  attempt.headTimedOut(ms);
}

export function createH2Forward(timeouts: ForwardTimeouts, sessionOptions: H2SessionOptions): Forward {
  /**
   * Opens the attempt's stream on a connected session. The endpoint counts as active from the pick:
   * until the stream closes, or here if no stream could be opened.
   */
  function open(x: ProxyExchange, state: EndpointState, peer: string, connection: H2Connection): Promise<UpstreamResponse> {
    let stream: ClientHttp2Stream;
    try {
      if (x.signal.aborted) throw x.signal.reason;
      const host = x.headers.host;
      const headers: OutgoingHttpHeaders = {
        ':method': x.method,
        ':path': x.path,
        ':scheme': connection.tls ? 'https' : 'http',
        ':authority': typeof host === 'string' ? host : state.key,
      };
      // Host travels as :authority. A loop rather than rest-and-spread: one copy, no literal with computed keys.
      for (const name in x.headers) if (name !== 'host') headers[name] = x.headers[name];
      stream = connection.session.request(headers, { endStream: x.body === null });
    } catch (err) {
      state.active--;
      return Promise.reject(upstreamError(err, peer));
    }
    const attempt = new H2Attempt(x, stream, state, peer, timeouts);
    if (Buffer.isBuffer(x.body)) stream.end(x.body);
    else if (x.body) sendBody(x.body, stream);
    return attempt.head;
  }

  return function forwardH2(x: ProxyExchange): Promise<UpstreamResponse> {
    let state: EndpointState;
    try {
      state = pickForAttempt(x);
    } catch (err) {
      return Promise.reject(err);
    }
    const peer = `${x.cluster.name}@${state.key}`;
    if (x.signal.aborted) return Promise.reject(upstreamError(x.signal.reason, peer));
    state.active++;
    const sessions = h2SessionsFor(x.cluster, sessionOptions);
    // Most attempts find their session up: no promise to wait on. The body is only touched once the
    // session is up, so a connect failure leaves it intact for a retry.
    const connected = sessions.connected(state);
    if (connected !== null) return open(x, state, peer, connected);
    return sessions.get(state).then(
      (connection) => open(x, state, peer, connection),
      (err: unknown) => {
        state.active--;
        throw upstreamError(err, peer);
      },
    );
  };
}
