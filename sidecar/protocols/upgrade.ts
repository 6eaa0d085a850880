/**
 * HTTP/1.1 Upgrade (WebSocket and others): the request runs through the same layers as any request
 * (authorization, rate limit, retries, breaker, fault injection, tracing) down to an endpoint reached
 * with the cluster's transport (TLS under mTLS). A 101 answer turns the connection into a byte pipe
 * both ways; any other answer is relayed and the connection closed; failures become proxy-made
 * responses written on the raw socket.
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import type { IncomingMessage, IncomingHttpHeaders } from 'node:http';
import { STATUS_CODES, request as httpRequest } from '../node-http.ts';
import type { Duplex } from 'node:stream';
import { PassThrough } from 'node:stream';
import { MeshletError, meshError } from '../errors.ts';
import { composeLayers, type ExchangeOutcome, type Forward, type ProxyExchange } from './exchange.ts';
import { addForwardingHeaders, endToEndHeaders, type HeaderMap } from './headers.ts';
import type { HttpProxyOptions } from './http1.ts';
import { upstreamError } from './respond.ts';
import { streamBody } from './pump.ts';
import type { WireReply } from './wire/reply.ts';
import type { WireRequest } from './wire/server-connection.ts';

/** Takes an Upgrade request: the client's socket and the bytes that followed the request head. */
export type UpgradeHandler = (req: WireRequest, socket: Duplex, head: Buffer) => void;

/** A request handler that may also take upgrades (listeners call `upgrade` for Upgrade requests). */
export type HttpHandler = ((req: WireRequest, res: WireReply) => void) & { upgrade?: UpgradeHandler };

/** Note set by the innermost step when the endpoint switched protocols: its socket and early bytes. */
const TUNNEL_NOTE = 'upgrade.tunnel';
const VIA = '1.1 meshlet';

interface Tunnel {
  readonly socket: Duplex;
  readonly head: Buffer;
}

/** Attaches an upgrade handler to a request handler. */
export function withUpgrade<H extends (req: WireRequest, res: WireReply) => void>(handler: H, upgrade: UpgradeHandler): H & { upgrade: UpgradeHandler } {
  return Object.assign(handler, { upgrade });
}

/** Writes a proxy-made error response on a raw socket and closes it. */
export function writeRawError(socket: Duplex, err: MeshletError): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify({ error: err.reason, code: err.code, message: err.message });
  socket.end(
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nx-meshlet-error: ${err.reason}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function headLines(headers: IncomingHttpHeaders | HeaderMap): string {
  let out = '';
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out += `${name}: ${v}\r\n`;
  }
  return out;
}

/** The innermost step for upgrades: one attempt to an endpoint; resolves at the response head. */
function createUpgradeForward(requestMs: number): Forward {
  return (x) =>
    new Promise((resolve, reject) => {
      const previous = x.tried.length > 0 ? x.tried[x.tried.length - 1] : undefined;
      const state = x.cluster.pick({ avoid: previous, hashKey: x.notes.get('hashKey') as string | undefined, pinned: x.notes.get('stickyEndpoint') as string | undefined });
      if (!state) {
        const kind = x.cluster.discovered ? 'NO_HEALTHY_ENDPOINT' : 'DISCOVERY_UNAVAILABLE';
        reject(meshError(kind, `no healthy endpoint for upstream "${x.cluster.name}" (service "${x.cluster.service}")`));
        return;
      }
      x.tried.push(state);
      x.attempts++;
      const peer = `${x.cluster.name}@${state.key}`;
      const req = httpRequest({ createConnection: () => x.cluster.openSocket(state), method: x.method, path: x.path, headers: x.headers, setHost: false });
      const fail = (err: unknown) => {
        cleanup();
        req.destroy();
        reject(upstreamError(err, peer));
      };
      const onAbort = () => fail(x.signal.reason);
      const timer = requestMs > 0 ? setTimeout(() => fail(meshError('UPSTREAM_TIMEOUT', `${peer} sent no response headers within ${requestMs} ms`)), requestMs) : undefined;
      const cleanup = () => {
        clearTimeout(timer);
        x.signal.removeEventListener('abort', onAbort);
      };
      x.signal.addEventListener('abort', onAbort, { once: true });
      req.once('error', fail);
      req.once('upgrade', (res: IncomingMessage, socket: Duplex, head: Buffer) => {
        cleanup();
        // Until the client side is joined, an error here must not go unheard (it would end the process).
        socket.on('error', () => socket.destroy());
        x.notes.set(TUNNEL_NOTE, { socket, head } satisfies Tunnel);
        const body = new PassThrough();
        body.end();
        resolve({ statusCode: res.statusCode ?? 101, headers: res.headers, body, endpoint: state });
      });
      req.once('response', (res: IncomingMessage) => {
        cleanup();
        res.once('end', () => req.destroy());
        resolve({ statusCode: res.statusCode ?? 502, headers: res.headers, body: res, endpoint: state });
      });
      req.end();
    });
}

function originForm(target: string, headers: HeaderMap): string {
  if (!/^https?:\/\//i.test(target) || !URL.canParse(target)) return target;
  const url = new URL(target);
  headers.host = url.host;
  return `${url.pathname}${url.search}`;
}

/** Builds the `upgrade` handler proxying to `options.cluster` through `options.layers`. */
export function createUpgradeProxy(options: HttpProxyOptions): UpgradeHandler {
  const forward = composeLayers(options.layers ?? [], createUpgradeForward(options.requestTimeoutMs));
  const observers = options.observers ?? [];
  const { cluster, clientProto, idleTimeoutMs, log } = options;

  return function proxyUpgrade(req, socket, head) {
    const controller = new AbortController();
    socket.on('error', (err: Error) => controller.abort(meshError('UPSTREAM_RESET', `client connection failed: ${err.message}`)));
    const onClientClose = () => controller.abort(meshError('UPSTREAM_RESET', 'client closed the connection'));
    socket.once('close', onClientClose);
    const headers = endToEndHeaders(req.headers);
    const protocol = req.headers.upgrade;
    let path = req.url ?? '/';
    if (path.charCodeAt(0) !== 47 /* '/' */) path = originForm(path, headers);
    addForwardingHeaders(headers, { clientAddress: req.socket.remoteAddress, proto: clientProto, host: headers.host as string | undefined, via: VIA });
    if (protocol !== undefined) {
      headers.connection = 'upgrade';
      headers.upgrade = protocol;
    }
    const exchange: ProxyExchange = {
      req,
      method: req.method ?? 'GET',
      path,
      headers,
      body: null,
      cluster,
      signal: controller.signal,
      tried: [],
      attempts: 0,
      startedAt: performance.now(),
      notes: new Map(),
    };
    const counters = socket as Duplex & { bytesRead?: number; bytesWritten?: number };
    const readAtStart = counters.bytesRead ?? 0;
    const writtenAtStart = counters.bytesWritten ?? 0;
    const report = (status: number, error: MeshletError | undefined) => {
      if (observers.length === 0) return;
      const outcome: ExchangeOutcome = {
        status,
        error: error ? { code: error.code, reason: error.reason, message: error.message } : undefined,
        endpoint: exchange.tried[exchange.tried.length - 1],
        bytesIn: (counters.bytesRead ?? 0) - readAtStart,
        bytesOut: (counters.bytesWritten ?? 0) - writtenAtStart,
        durationMs: performance.now() - exchange.startedAt,
      };
      for (const o of observers) o.onEnd?.(exchange, outcome);
    };
    run().catch((err: unknown) => log.error({ err, upstream: cluster.name }, 'upgrade proxy bug'));

    async function run(): Promise<void> {
      let upstream;
      try {
        for (const o of observers) o.onStart?.(exchange);
        upstream = await forward(exchange);
      } catch (err) {
        // A layer failing after the endpoint switched protocols must not leave that connection open.
        (exchange.notes.get(TUNNEL_NOTE) as Tunnel | undefined)?.socket.destroy();
        const error = err instanceof MeshletError ? err : upstreamError(err, cluster.name);
        if (!controller.signal.aborted) writeRawError(socket, error);
        else socket.destroy();
        report(controller.signal.aborted ? 0 : error.status, error);
        return;
      }
      const tunnel = exchange.notes.get(TUNNEL_NOTE) as Tunnel | undefined;
      if (tunnel && upstream.statusCode !== 101) tunnel.socket.destroy();
      if (upstream.statusCode === 101 && tunnel) {
        upstream.body.resume();
        socket.removeListener('close', onClientClose);
        pipeBothWays(socket, head, tunnel, `HTTP/1.1 101 ${STATUS_CODES[101]}\r\n${headLines(upstream.headers)}\r\n`, idleTimeoutMs, () => report(101, undefined));
        return;
      }
      // Refused (or answered) without switching: relay the answer, then close.
      const relayed = endToEndHeaders(upstream.headers);
      relayed.via = VIA;
      socket.write(`HTTP/1.1 ${upstream.statusCode} ${STATUS_CODES[upstream.statusCode] ?? ''}\r\n${headLines(relayed)}connection: close\r\n\r\n`);
      streamBody(upstream.body, socket).catch(() => socket.destroy());
      socket.once('close', () => {
        upstream.body.destroy();
        report(upstream.statusCode, undefined);
      });
    }
  };
}

/** Joins the client and the upstream after a 101: bytes flow both ways until either side closes. */
function pipeBothWays(client: Duplex, clientHead: Buffer, tunnel: Tunnel, responseHead: string, idleMs: number, onClosed: () => void): void {
  const upstream = tunnel.socket;
  let closed = 0;
  const done = () => {
    if (++closed === 2) onClosed();
  };
  client.once('close', () => {
    upstream.destroy();
    done();
  });
  upstream.once('close', () => {
    client.destroy();
    done();
  });
  upstream.on('error', () => client.destroy());
  client.write(responseHead);
  if (tunnel.head.length > 0) client.write(tunnel.head);
  if (clientHead.length > 0) upstream.write(clientHead);
  if (idleMs > 0) {
    const setIdle = (s: Duplex) => (s as Duplex & { setTimeout?: (ms: number, cb: () => void) => void }).setTimeout?.(idleMs, () => s.destroy());
    setIdle(client);
    setIdle(upstream);
  }
  upstream.pipe(client);
  client.pipe(upstream);
}
