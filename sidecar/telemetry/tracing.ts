/**
 * Spans for every mesh hop, without tracing code in the app. Per proxied exchange, a SERVER span from
 * the moment the request arrives until the response is sent (parent: the caller's context, from the
 * accepted header formats). Outbound, every attempt gets a CLIENT span under it (so each retry is its
 * own span) whose context travels to the peer; inbound, the SERVER span's context travels to the app.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, ParentBasedSampler, TraceIdRatioBasedSampler, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_ERROR_TYPE,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_REQUEST_RESEND_COUNT,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_NAMESPACE,
  ATTR_URL_PATH,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import type { TLSSocket } from 'node:tls';
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import { whenBodyCloses, type ExchangeObserver, type ExchangeOutcome, type ForwardLayer, type ProxyExchange } from '../protocols/exchange.ts';
import type { UpstreamLayerContext } from '../sidecar.ts';
import type { TracingConfig } from './config.ts';
import { BoundedBatchProcessor, type ExportCounters } from './export.ts';
import { TracePropagation } from './propagation.ts';

import { TRACE_NOTE } from './trace-context.ts';
import { pathWithoutQuery } from '../protocols/headers.ts';

export { TRACE_NOTE };
/** `exchange.notes` key of the attempt spans not ended yet. */
const OPEN_ATTEMPTS_NOTE = 'trace.attempts';

/** Not in the stable semantic conventions yet; the names tracing backends use for service maps. */
const ATTR_PEER_SERVICE = 'peer.service';

export interface TracingOptions {
  readonly config: TracingConfig;
  readonly url: string;
  readonly serviceName: string;
  readonly namespace: string;
  /** The cluster of the local app: exchanges on it are inbound. */
  readonly localCluster: Cluster;
  readonly counters: ExportCounters;
  /** More span processors, after the exporting one (e.g. the admin API's trace store). */
  readonly processors?: readonly SpanProcessor[];
}

function setEndpoint(span: Span, endpoint: EndpointState): void {
  const { address, port } = endpoint.endpoint;
  span.setAttributes({ [ATTR_SERVER_ADDRESS]: address, [ATTR_SERVER_PORT]: port, [ATTR_NETWORK_PEER_ADDRESS]: address, [ATTR_NETWORK_PEER_PORT]: port });
}

function errorReason(err: unknown): string {
  if (err && typeof err === 'object' && 'reason' in err && typeof err.reason === 'string') return err.reason;
  return err instanceof Error ? err.name : 'error';
}

/** One sidecar's tracer provider, exporter and the observer and layers that make its spans. */
export class MeshTracing {
  readonly #provider: BasicTracerProvider;
  readonly #processor: BoundedBatchProcessor;
  readonly #tracer: Tracer;
  readonly #propagation: TracePropagation;
  readonly #local: Cluster;

  constructor(options: TracingOptions) {
    const { config } = options;
    this.#local = options.localCluster;
    this.#propagation = new TracePropagation(config.propagation.accept, config.propagation.emit);
    const exporter = new OTLPTraceExporter({ url: options.url, timeoutMillis: config.exportTimeout });
    this.#processor = new BoundedBatchProcessor(
      exporter,
      {
        maxQueueSize: config.maxQueueSize,
        maxExportBatchSize: config.maxExportBatchSize,
        scheduledDelayMillis: config.batchDelay,
        exportTimeoutMillis: config.exportTimeout,
      },
      options.counters,
    );
    this.#provider = new BasicTracerProvider({
      resource: defaultResource().merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName, [ATTR_SERVICE_NAMESPACE]: options.namespace })),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
      spanProcessors: [this.#processor, ...(options.processors ?? [])],
    });
    this.#tracer = this.#provider.getTracer('meshlet');
  }

  /** Finished spans waiting for export. */
  get queued(): number {
    return this.#processor.queued;
  }

  /** Starts the SERVER span when an exchange arrives and ends it with the outcome. */
  readonly observer: ExchangeObserver = {
    onStart: (x) => this.#startServerSpan(x),
    onEnd: (x, outcome) => this.#endServerSpan(x, outcome),
  };

  /** Outbound, per attempt: a CLIENT span whose context is sent to the peer. Must be the innermost layer. */
  readonly clientLayer = (ctx: UpstreamLayerContext): ForwardLayer => {
    const upstream = ctx.upstream.name;
    const service = ctx.cluster.service;
    return (next) => async (x) => {
      const server = x.notes.get(TRACE_NOTE) as Span | undefined;
      const attempt = x.attempts + 1;
      const span = this.#tracer.startSpan(`${x.method} ${upstream}`, { kind: SpanKind.CLIENT }, server ? trace.setSpan(ROOT_CONTEXT, server) : ROOT_CONTEXT);
      this.#propagation.inject(trace.setSpan(ROOT_CONTEXT, span), x.headers);
      const recording = span.isRecording();
      if (recording) {
        span.setAttributes({ [ATTR_HTTP_REQUEST_METHOD]: x.method, [ATTR_URL_PATH]: pathWithoutQuery(x.path), [ATTR_PEER_SERVICE]: service, 'meshlet.upstream': upstream, 'meshlet.attempt': attempt });
        if (attempt > 1) span.setAttribute(ATTR_HTTP_REQUEST_RESEND_COUNT, attempt - 1);
        this.#openAttempts(x).add(span);
      }
      // The inner forward counts the attempt once it picked an endpoint; before that there is none.
      const endpoint = () => (x.attempts === attempt ? x.tried[x.tried.length - 1] : undefined);
      let response;
      try {
        response = await next(x);
      } catch (err) {
        if (recording) {
          const picked = endpoint();
          if (picked) setEndpoint(span, picked);
          span.setAttribute(ATTR_ERROR_TYPE, errorReason(err));
          span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
          this.#endAttempt(x, span);
        }
        throw err;
      }
      if (recording) {
        setEndpoint(span, response.endpoint);
        span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, response.statusCode);
        // For a client, any 4xx/5xx is an error (semantic conventions).
        if (response.statusCode >= 400) {
          span.setAttribute(ATTR_ERROR_TYPE, String(response.statusCode));
          span.setStatus({ code: SpanStatusCode.ERROR });
        }
        whenBodyCloses(response.body, () => this.#endAttempt(x, span));
      }
      return response;
    };
  };

  /** Inbound: the app receives the SERVER span's context, so its own spans nest under this hop. */
  readonly inboundLayer: ForwardLayer = (next) => (x) => {
    const server = x.notes.get(TRACE_NOTE) as Span | undefined;
    if (server) this.#propagation.inject(trace.setSpan(ROOT_CONTEXT, server), x.headers);
    return next(x);
  };

  #startServerSpan(x: ProxyExchange): void {
    const inbound = x.cluster === this.#local;
    const name = inbound ? `${x.method} inbound` : `${x.method} ${x.cluster.name}`;
    const span = this.#tracer.startSpan(name, { kind: SpanKind.SERVER }, this.#propagation.extract(x.req.headers));
    x.notes.set(TRACE_NOTE, span);
    if (!span.isRecording()) return;
    const socket = x.req.socket;
    span.setAttributes({
      [ATTR_HTTP_REQUEST_METHOD]: x.method,
      [ATTR_URL_PATH]: pathWithoutQuery(x.path),
      [ATTR_URL_SCHEME]: (socket as TLSSocket).encrypted ? 'https' : 'http',
      [ATTR_NETWORK_PROTOCOL_VERSION]: x.req.httpVersion,
      'meshlet.direction': inbound ? 'inbound' : 'outbound',
    });
    if (socket.localAddress) span.setAttributes({ [ATTR_SERVER_ADDRESS]: socket.localAddress, [ATTR_SERVER_PORT]: socket.localPort ?? 0 });
    if (socket.remoteAddress) span.setAttributes({ [ATTR_CLIENT_ADDRESS]: socket.remoteAddress, [ATTR_NETWORK_PEER_ADDRESS]: socket.remoteAddress, [ATTR_NETWORK_PEER_PORT]: socket.remotePort ?? 0 });
    const agent = x.req.headers['user-agent'];
    if (agent) span.setAttribute(ATTR_USER_AGENT_ORIGINAL, agent);
    if (!inbound) span.setAttributes({ [ATTR_PEER_SERVICE]: x.cluster.service, 'meshlet.upstream': x.cluster.name });
  }

  #endServerSpan(x: ProxyExchange, outcome: ExchangeOutcome): void {
    const span = x.notes.get(TRACE_NOTE) as Span | undefined;
    if (!span) return;
    if (span.isRecording()) {
      span.setAttribute('meshlet.attempts', x.attempts);
      if (outcome.status > 0) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, outcome.status);
      if (outcome.endpoint) span.setAttribute('meshlet.endpoint', outcome.endpoint.key);
      if (outcome.error) {
        span.setAttribute(ATTR_ERROR_TYPE, outcome.error.reason);
        if (outcome.status >= 500 || outcome.status === 0) span.setStatus({ code: SpanStatusCode.ERROR, message: outcome.error.message });
      } else if (outcome.status >= 500) {
        // For a server, only 5xx is its error; a 4xx is the caller's.
        span.setAttribute(ATTR_ERROR_TYPE, String(outcome.status));
        span.setStatus({ code: SpanStatusCode.ERROR });
      } else if (outcome.status === 0) {
        span.setAttribute(ATTR_ERROR_TYPE, 'client_closed');
      }
      // Attempts whose response body was dropped unread (e.g. a retried 503) end with the exchange.
      const open = x.notes.get(OPEN_ATTEMPTS_NOTE) as Set<Span> | undefined;
      if (open) for (const attempt of open) attempt.end();
    }
    span.end();
  }

  #openAttempts(x: ProxyExchange): Set<Span> {
    let open = x.notes.get(OPEN_ATTEMPTS_NOTE) as Set<Span> | undefined;
    if (!open) {
      open = new Set();
      x.notes.set(OPEN_ATTEMPTS_NOTE, open);
    }
    return open;
  }

  #endAttempt(x: ProxyExchange, span: Span): void {
    (x.notes.get(OPEN_ATTEMPTS_NOTE) as Set<Span> | undefined)?.delete(span);
    span.end();
  }

  /** Exports what is queued and stops; gives up after `timeoutMs` so a dead collector cannot hold shutdown. Rejects if the final export failed. */
  async shutdown(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
      timer.unref();
    });
    // Settles either way, so a rejection after the deadline is never left unhandled.
    const flushed = this.#provider.shutdown().then(
      () => undefined,
      (err: unknown) => err,
    );
    const failure = await Promise.race([flushed, deadline]);
    clearTimeout(timer);
    if (failure !== undefined) throw failure;
  }
}
