import { meshError } from '../errors.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import type { SerializedFields, WireBody, WireResponse } from './wire/upstream-pool.ts';
import { abortWatchOf, whenBodyCloses, type Forward, type ProxyExchange, type UpstreamResponse } from './exchange.ts';
import { upstreamError } from './respond.ts';

export interface ForwardTimeouts {
  /** Until response headers arrive; 0 disables. */
  readonly requestMs: number;
  /** Longest silence while reading the response body; 0 disables. */
  readonly idleMs: number;
}

/**
 * Starts an attempt: picks an endpoint (avoiding the one the last attempt failed on, honouring hash and
 * sticky notes) and records it; throws the typed 503 when none can take traffic. Shared by every protocol.
 */
export function pickForAttempt(x: ProxyExchange): EndpointState {
  const previous = x.tried.length > 0 ? x.tried[x.tried.length - 1] : undefined;
  // Most exchanges carry no notes: two map lookups (each hashing its key) saved per attempt.
  const notes = x.notes;
  const hashKey = notes.size === 0 ? undefined : (notes.get('hashKey') as string | undefined);
  const pinned = notes.size === 0 ? undefined : (notes.get('stickyEndpoint') as string | undefined);
  const state = x.cluster.pick({ avoid: previous, hashKey, pinned });
  if (!state) {
    const kind = x.cluster.discovered ? 'NO_HEALTHY_ENDPOINT' : 'DISCOVERY_UNAVAILABLE';
    throw meshError(kind, `no healthy endpoint for upstream "${x.cluster.name}" (service "${x.cluster.service}")`);
  }
  x.tried.push(state);
  x.attempts++;
  return state;
}

/** A pooled connection's response and the endpoint that sent it; its header object is built only if a layer asks. */
class EndpointResponse implements UpstreamResponse {
  /** Not a thenable, said where V8 looks first: see WireResponse#then. */
  readonly then = undefined;
  readonly #response: WireResponse;
  readonly endpoint: EndpointState;

  constructor(response: WireResponse, endpoint: EndpointState) {
    this.#response = response;
    this.endpoint = endpoint;
  }

  get statusCode(): number {
    return this.#response.statusCode;
  }

  get headers(): Record<string, string | string[]> {
    return this.#response.headers;
  }

  get untouchedRawHeaders(): readonly string[] | undefined {
    return this.#response.untouchedRawHeaders;
  }

  get body(): WireBody {
    return this.#response.body;
  }
}

function hostOf(state: EndpointState): string {
  const { address, port } = state.endpoint;
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/**
 * The innermost step: pick an endpoint, send one attempt over its pooled connection, and resolve
 * when response headers arrive. Tracks in-flight counts for balancers until the body is done.
 */
export function createEndpointForward(timeouts: ForwardTimeouts): Forward {
  return function forwardToEndpoint(x: ProxyExchange): Promise<UpstreamResponse> {
    let state: EndpointState;
    let sent: Promise<WireResponse>;
    try {
      state = pickForAttempt(x);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    // Received fields no layer asked for leave as they are; else the (possibly edited) header object.
    const relayed = x.relayedFields;
    let fields: SerializedFields | undefined = relayed;
    // HTTP/1.0 clients may omit Host; HTTP/1.1 servers must refuse a request without one (RFC 9112 3.2).
    if (relayed === undefined) {
      if (x.headers.host === undefined) x.headers.host = hostOf(state);
    } else if (!relayed.hasHost) fields = { lines: `host: ${hostOf(state)}\r\n${relayed.lines}`, contentLength: relayed.contentLength };
    state.active++;
    try {
      // The pool enforces both limits with timers it keeps per connection, and takes the exchange's
      // signal as is: no timer, clock reading or AbortController per attempt on the hot path.
      sent = x.cluster.pool(state).request({
        path: x.path,
        method: x.method,
        headers: fields === undefined ? x.headers : undefined,
        fields,
        body: x.body,
        signal: abortWatchOf(x),
        headersTimeoutMs: timeouts.requestMs,
        // The request timeout counts from the exchange's start (the retry layer's deadline for later attempts).
        startedAt: x.startedAt,
        bodyIdleTimeoutMs: timeouts.idleMs,
      });
    } catch (err) {
      sent = Promise.reject(err as Error);
    }
    // A promise chain rather than an async function: one fewer frame and promise per attempt.
    return sent.then(
      (response) => {
        whenBodyCloses(response.body, () => state.active--);
        return new EndpointResponse(response, state);
      },
      (err: unknown) => {
        state.active--;
        throw upstreamError(err, `${x.cluster.name}@${state.key}`);
      },
    );
  };
}
