import { Buffer } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import type { AbortWatch } from './exchange-abort.ts';
import type { HeaderMap } from './headers.ts';
import type { RelayedRequestFields } from './relayed-fields.ts';
import { WireBody } from './wire/response-body.ts';

/**
 * What layers and observers may read of the client's request: node:http's IncomingMessage, an
 * HTTP/2 request and the raw-socket fast path's WireRequest all have this shape.
 */
export interface ClientRequestView {
  readonly headers: IncomingHttpHeaders;
  readonly httpVersion: string;
  readonly socket: Socket;
}

/**
 * One proxied HTTP request as it moves through the layers. The listener builds it, layers (retries,
 * timeouts, breakers, tracing) wrap the forwarding step, and the response writer consumes the result.
 */
export interface ProxyExchange {
  readonly req: ClientRequestView;
  readonly method: string;
  readonly path: string;
  /** Outgoing headers, already cleaned of hop-by-hop ones; layers may add (tracing, identity). */
  readonly headers: HeaderMap;
  /** Request body: the client stream, a buffered copy (so retries can resend it), or null if none. */
  body: Readable | Buffer | null;
  readonly cluster: Cluster;
  /** Aborted when the client goes away; layers pass it on so upstream work stops too. */
  readonly signal: AbortSignal;
  /**
   * The same abort, for reading `aborted` and for listening without making `signal` exist: an
   * exchange may build its AbortSignal only on first access (Http1Exchange). Read it through
   * `abortWatchOf`; undefined means `signal` is the one to watch.
   */
  readonly abortWatch?: AbortWatch | undefined;
  /** Endpoints tried so far, in order. */
  readonly tried: EndpointState[];
  /** Number of attempts made (1 after the first try). */
  attempts: number;
  readonly startedAt: number;
  /** Per-exchange notes for observers (e.g. trace ids, client identity), keyed by the layer's name. */
  readonly notes: Map<string, unknown>;
  /**
   * The outgoing fields already serialized from the received ones (HTTP/1.1 only), offered while nobody
   * has asked for `headers` (which may then have been edited): the forward step sends them as they are.
   */
  readonly relayedFields?: RelayedRequestFields | undefined;
}

/** A response from an endpoint, headers received and body not yet read. */
export interface UpstreamResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string | string[] | undefined>;
  /**
   * The fields exactly as a strict HTTP/1.1 parser received them, offered only while nobody has read
   * (and so possibly edited) `headers`: the HTTP/1.1 writer then relays them without building that object.
   */
  readonly untouchedRawHeaders?: readonly string[] | undefined;
  /** A stream (HTTP/2), or a body read straight off a pooled HTTP/1.1 connection. */
  readonly body: Readable | WireBody;
  readonly endpoint: EndpointState;
}

/** One step of forwarding: send the exchange somewhere, resolve with the upstream's response. */
export type Forward = (exchange: ProxyExchange) => Promise<UpstreamResponse>;

/** A resilience or telemetry layer: `(next) => forward`, composed outermost first. */
export type ForwardLayer = (next: Forward) => Forward;

/** What an exchange ended with, for observers (metrics, access log, tracing). */
export interface ExchangeOutcome {
  /** Status sent to the client (0 when the client left before any response). */
  readonly status: number;
  /** The Meshlet error behind a proxy-made response, if any. */
  readonly error?: { readonly code: string; readonly reason: string; readonly message: string } | undefined;
  readonly endpoint?: EndpointState | undefined;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
}

/** Observes exchanges without taking part in forwarding. Implementations must not throw or block. */
export interface ExchangeObserver {
  onStart?(exchange: ProxyExchange): void;
  onEnd?(exchange: ProxyExchange, outcome: ExchangeOutcome): void;
}

/**
 * `next(x)` as a promise whatever happens: a layer that throws instead of rejecting fails only this
 * attempt, as it would inside an async function. For layers written as promise chains.
 */
export function callForward(next: Forward, x: ProxyExchange): Promise<UpstreamResponse> {
  try {
    return next(x);
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/**
 * A copy of `x` whose signal is `signal`, for a layer that bounds the work below it (a deadline). It
 * shares the rest (tried, notes, the headers object); the caller copies back `attempts` and `body`.
 * `headers` is read explicitly: an exchange may keep it behind a getter (Http1Exchange), which a
 * spread does not copy; the copy then sends that object, not the relayed fields.
 */
export function exchangeWithSignal(x: ProxyExchange, signal: AbortSignal): ProxyExchange {
  return { ...x, headers: x.headers, relayedFields: undefined, signal, abortWatch: signal };
}

/** The exchange's abort to read or listen to, without making an exchange build its AbortSignal. */
export function abortWatchOf(x: ProxyExchange): AbortWatch {
  return x.abortWatch ?? x.signal;
}

/** Composes layers so the first one listed is the outermost. */
export function composeLayers(layers: readonly ForwardLayer[], innermost: Forward): Forward {
  let forward = innermost;
  for (let i = layers.length - 1; i >= 0; i--) forward = layers[i]!(forward);
  return forward;
}

/**
 * Calls `callback` once when a response body is done (ended, failed or destroyed). Layers use it to
 * release what an attempt holds; a pooled HTTP/1.1 body takes the callback directly.
 */
export function whenBodyCloses(body: Readable | WireBody, callback: () => void): void {
  if (body instanceof WireBody) body.onClose(callback);
  else body.once('close', callback);
}
