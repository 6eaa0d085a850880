/**
 * `GET /tap`: live requests as Server-Sent Events, one `data:` JSON line per finished exchange (like
 * Linkerd's tap). The observer does nothing while nobody listens. A listener that reads too slowly
 * never holds up requests: past `maxBufferedBytes` queued for it, its events are skipped and counted,
 * and it gets an `event: dropped` with the count once it catches up.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Span } from '@opentelemetry/api';
import type { Cluster } from '../cluster/cluster.ts';
import type { ExchangeObserver } from '../protocols/exchange.ts';
import { CALLER_NOTE } from '../security/inbound.ts';
import { TRACE_NOTE, traceIdFromHeaders } from '../telemetry/trace-context.ts';
import { sendJson } from './server.ts';
import { pathWithoutQuery } from '../protocols/headers.ts';

/** One finished exchange, as streamed. */
export interface TapEvent {
  /** When the request arrived (ISO 8601). */
  readonly time: string;
  readonly direction: 'inbound' | 'outbound';
  /** Upstream name; `local` for inbound (the app behind this sidecar). */
  readonly upstream: string;
  readonly method: string;
  /** Without the query string (it may carry tokens). */
  readonly path: string;
  /** 0 when the client left before any response. */
  readonly status: number;
  readonly endpoint?: string;
  readonly attempts: number;
  readonly durationMs: number;
  /** Address of the client that sent the request to this sidecar. */
  readonly client?: string;
  /** The caller's SPIFFE ID, inbound with mTLS. */
  readonly peer?: string;
  readonly traceId?: string;
  /** The `x-meshlet-error` reason of a proxy-made response. */
  readonly error?: string;
}

export interface TapFilter {
  readonly upstream?: string;
  readonly direction?: 'inbound' | 'outbound';
  readonly method?: string;
  /** Exact status (`503`) or class (`5xx`). */
  readonly status?: { readonly exact: number } | { readonly cls: number };
  readonly path?: string;
}

/** Heartbeat comment interval: keeps idle streams alive through proxies and detects gone clients. */
const HEARTBEAT_MS = 15_000;
const CLIENT_NOTE = 'tap.client';

/** Reads `?upstream=&direction=&method=&status=&path=`; throws with the parameter named when one is bad. */
export function parseTapFilter(params: URLSearchParams): TapFilter {
  const filter: { -readonly [K in keyof TapFilter]: TapFilter[K] } = {};
  for (const [key, value] of params) {
    switch (key) {
      case 'upstream':
        filter.upstream = value;
        break;
      case 'direction':
        if (value !== 'inbound' && value !== 'outbound') throw new Error(`direction: expected inbound or outbound, got "${value}"`);
        filter.direction = value;
        break;
      case 'method':
        filter.method = value.toUpperCase();
        break;
      case 'path':
        if (!value.startsWith('/')) throw new Error(`path: expected a path prefix starting with /, got "${value}"`);
        filter.path = value;
        break;
      case 'status': {
        const cls = /^([1-5])xx$/i.exec(value);
        if (cls) filter.status = { cls: Number(cls[1]) };
        else if (/^[1-5]\d\d$|^0$/.test(value)) filter.status = { exact: Number(value) };
        else throw new Error(`status: expected a status (503) or a class (5xx), got "${value}"`);
        break;
      }
      default:
        throw new Error(`unknown filter "${key}" (expected upstream, direction, method, status, path)`);
    }
  }
  return filter;
}

export function matchesTapFilter(event: TapEvent, filter: TapFilter): boolean {
  if (filter.upstream !== undefined && filter.upstream !== event.upstream && !(filter.upstream === 'inbound' && event.direction === 'inbound')) return false;
  if (filter.direction !== undefined && filter.direction !== event.direction) return false;
  if (filter.method !== undefined && filter.method !== event.method) return false;
  if (filter.path !== undefined && !event.path.startsWith(filter.path)) return false;
  if (filter.status !== undefined) {
    if ('exact' in filter.status ? event.status !== filter.status.exact : ((event.status / 100) | 0) !== filter.status.cls) return false;
  }
  return true;
}

class TapSubscriber {
  readonly #res: ServerResponse;
  readonly #filter: TapFilter;
  readonly #maxBuffered: number;
  /** Events skipped since the last one delivered. */
  #skipped = 0;

  constructor(res: ServerResponse, filter: TapFilter, maxBuffered: number) {
    this.#res = res;
    this.#filter = filter;
    this.#maxBuffered = maxBuffered;
  }

  /** Sends `frame` if the event matches and the client keeps up; false when it had to be skipped. */
  offer(event: TapEvent, frame: string): boolean {
    if (!matchesTapFilter(event, this.#filter)) return true;
    const res = this.#res;
    if (res.writableLength > this.#maxBuffered) {
      this.#skipped++;
      return false;
    }
    if (this.#skipped > 0) {
      res.write(`event: dropped\ndata: {"dropped":${this.#skipped}}\n\n`);
      this.#skipped = 0;
    }
    res.write(frame);
    return true;
  }
}

/** The live request stream of one sidecar: an exchange observer and the `GET /tap` handler. */
export class TapHub {
  readonly #subscribers = new Set<TapSubscriber>();
  readonly #local: Cluster;
  readonly #maxBuffered: number;
  readonly #service: string;
  /** Events skipped for slow listeners, over the sidecar's life. */
  skipped = 0;

  constructor(options: { localCluster: Cluster; maxBufferedBytes: number; service: string }) {
    this.#local = options.localCluster;
    this.#maxBuffered = options.maxBufferedBytes;
    this.#service = options.service;
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Installed once; costs one size check per exchange while nobody taps. */
  readonly observer: ExchangeObserver = {
    onStart: (x) => {
      // Read now: node:http detaches req.socket once the connection is gone.
      if (this.#subscribers.size > 0) x.notes.set(CLIENT_NOTE, x.req.socket.remoteAddress);
    },
    onEnd: (x, outcome) => {
      if (this.#subscribers.size === 0) return;
      const inbound = x.cluster === this.#local;
      const span = x.notes.get(TRACE_NOTE) as Span | undefined;
      const event: TapEvent = {
        time: new Date(Date.now() - outcome.durationMs).toISOString(),
        direction: inbound ? 'inbound' : 'outbound',
        upstream: inbound ? 'local' : x.cluster.name,
        method: x.method,
        path: pathWithoutQuery(x.path),
        status: outcome.status,
        endpoint: outcome.endpoint?.key,
        attempts: x.attempts,
        durationMs: Math.round(outcome.durationMs * 1000) / 1000,
        client: x.notes.get(CLIENT_NOTE) as string | undefined,
        peer: x.notes.get(CALLER_NOTE) as string | undefined,
        traceId: span ? span.spanContext().traceId : traceIdFromHeaders(x.req.headers),
        error: outcome.error?.reason,
      };
      const frame = `data: ${JSON.stringify(event)}\n\n`;
      for (const subscriber of this.#subscribers) if (!subscriber.offer(event, frame)) this.skipped++;
    },
  };

  /** `GET /tap`: streams until the client goes away (or the admin API closes). */
  readonly handler = (_req: IncomingMessage, res: ServerResponse, url: URL): void => {
    let filter: TapFilter;
    try {
      filter = parseTapFilter(url.searchParams);
    } catch (err) {
      sendJson(res, 400, { error: `GET /tap: ${(err as Error).message}` });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(`event: hello\ndata: ${JSON.stringify({ service: this.#service, filter })}\n\n`);
    const subscriber = new TapSubscriber(res, filter, this.#maxBuffered);
    this.#subscribers.add(subscriber);
    const heartbeat = setInterval(() => res.write(': keepalive\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    const done = () => {
      clearInterval(heartbeat);
      this.#subscribers.delete(subscriber);
    };
    res.once('close', done);
  };
}
