/**
 * The exchange of one HTTP/1.1 request from the wire server. Its outgoing `headers` object is built
 * only when a layer asks for it; until then the forward step sends the received fields straight from
 * llhttp's raw pairs (`relayedFields`), with the forwarding fields added the same way.
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import type { ExchangeAbort } from './exchange-abort.ts';
import type { ProxyExchange } from './exchange.ts';
import { addForwardingHeaders, endToEndHeaders, type HeaderMap, type HopFacts } from './headers.ts';
import { type RelayedRequestFields, relayedRequestFields } from './relayed-fields.ts';
import type { WireRequest } from './wire/server-connection.ts';

export class Http1Exchange implements ProxyExchange {
  readonly req: WireRequest;
  readonly method: string;
  readonly path: string;
  body: Readable | Buffer | null;
  readonly cluster: Cluster;
  /** Aborted when the client goes away; `signal` is made from it only if a layer asks. */
  readonly abortWatch: ExchangeAbort;
  readonly tried: EndpointState[] = [];
  attempts = 0;
  readonly startedAt: number;
  readonly notes = new Map<string, unknown>();
  readonly #hop: HopFacts;
  /** The host of an absolute-form target, which replaces the Host field (RFC 9112 3.2.2). */
  readonly #targetHost: string | undefined;
  #headers: HeaderMap | undefined;
  /** undefined: not worked out yet; null: the raw fields cannot be relayed as they are. */
  #relayed: RelayedRequestFields | null | undefined;

  constructor(req: WireRequest, path: string, cluster: Cluster, abort: ExchangeAbort, hop: HopFacts, targetHost?: string) {
    this.req = req;
    this.method = req.method;
    this.path = path;
    this.body = req.body;
    this.cluster = cluster;
    this.abortWatch = abort;
    this.startedAt = performance.now();
    this.#hop = hop;
    this.#targetHost = targetHost;
  }

  get signal(): AbortSignal {
    return this.abortWatch.signal;
  }

  /** The outgoing headers: end-to-end ones without Expect (the listener answered it), plus forwarding ones. Built on first access; layers may edit them. */
  get headers(): HeaderMap {
    if (this.#headers === undefined) {
      const headers = endToEndHeaders(this.req.headers);
      if (headers.expect !== undefined) delete headers.expect;
      if (this.#targetHost !== undefined) headers.host = this.#targetHost;
      addForwardingHeaders(headers, { ...this.#hop, host: headers.host as string | undefined });
      this.#headers = headers;
    }
    return this.#headers;
  }

  get relayedFields(): RelayedRequestFields | undefined {
    if (this.#headers !== undefined || this.#targetHost !== undefined) return undefined;
    if (this.#relayed === undefined) {
      const raw = this.req.untouchedRawHeaders;
      this.#relayed = (raw && relayedRequestFields(raw, this.#hop)) ?? null;
    }
    return this.#relayed ?? undefined;
  }
}
