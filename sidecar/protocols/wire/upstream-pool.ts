/**
 * A pool of raw keep-alive HTTP/1.1 connections to ONE endpoint: the fast-path replacement for an
 * undici Pool. Requests go out as one latin1 head string (plus body) per socket write; responses are
 * parsed with llhttp on the connection (upstream-connection.ts) and their bodies are WireBody objects.
 * One request per connection at a time; idle connections are reused LIFO (the warmest socket first);
 * requests beyond maxConnections wait FIFO.
 */
import { Buffer } from 'node:buffer';
import type { OnReadOpts, Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { HeaderMap } from '../headers.ts';
import type { AbortWatch } from '../exchange-abort.ts';
import type { WireResponse } from './wire-response.ts';
import { firstBadField, isFieldBlock, isMethod, isRequestTarget } from './field-syntax.ts';
import { type ConnectionOwner, headersTimeoutError, type RequestOnConnection, UpstreamConnection, wireError } from './upstream-connection.ts';

export type { BodySink, WireBody } from './response-body.ts';
export type { WireResponse } from './wire-response.ts';

export interface WirePoolOptions {
  /**
   * Opens a new connection to the endpoint: a connecting net.Socket or tls.TLSSocket (mTLS). It should
   * pass `onread` to net.connect/tls.connect (reads then land in one shared buffer, with no Buffer and
   * no 'data' event per read); a socket made without it is read through 'data' events instead.
   */
  readonly connect: (onread: OnReadOpts) => Socket;
  /** Names the endpoint in errors, e.g. `backend@127.0.0.1:8080`. */
  readonly peer: string;
  /** Connect (and TLS handshake: 'secureConnect' for a TLSSocket, else 'connect') deadline. */
  readonly connectTimeoutMs: number;
  /** Pooled idle connections are closed after this. */
  readonly idleTimeoutMs: number;
  /** Open at once (in use + connecting); more requests wait FIFO for a free one. */
  readonly maxConnections: number;
  /** Default 64 KiB; larger response heads fail with HPE_HEADER_OVERFLOW. */
  readonly maxResponseHeadBytes?: number;
}

export interface WireRequestOptions {
  readonly method: string;
  readonly path: string;
  /** End-to-end headers, lowercase names (the caller removed hop-by-hop ones). The pool adds framing. Ignored when `fields` is given. */
  readonly headers?: HeaderMap | undefined;
  /** The fields already serialized and valid, sent as they are (instead of `headers`). */
  readonly fields?: SerializedFields | undefined;
  readonly body: Buffer | Readable | null;
  /** Abort: the connection in use is destroyed (never reused); the promise rejects / the body fails with signal.reason. */
  readonly signal?: AbortWatch | undefined;
  /** Longest silence while waiting for/reading the response body (met up to a quarter of it late); 0 disables. */
  readonly bodyIdleTimeoutMs: number;
  /**
   * Until the response head arrives, from `startedAt` or else from when the request is sent (a wait
   * for a free connection counts too; connecting has its own deadline); 0 or absent disables.
   */
  readonly headersTimeoutMs?: number;
  /**
   * When the headers timeout counts from, a performance.now() time the caller already read (the
   * exchange's start): the connection then needs no clock reading per request.
   */
  readonly startedAt?: number | undefined;
}

/**
 * Field lines relayed from a head strict llhttp parsed (test/unit/wire-field-trust.test.ts: it admits
 * nothing the pool's own check refuses), plus fields the caller built from valid parts. Not checked again.
 */
export interface SerializedFields {
  /** `name: value\r\n` lines without Content-Length, Transfer-Encoding, Connection and Keep-Alive: framing is the pool's. */
  readonly lines: string;
  /** The request's Content-Length value, if it has one. */
  readonly contentLength: string | undefined;
}

const DEFAULT_MAX_RESPONSE_HEAD_BYTES = 64 * 1024;

/**
 * Where every pooled upstream socket reads into. One is enough: a read is parsed to the end inside its
 * callback, and what outlives it is copied out (llhttp copies body chunks; header fields become strings).
 */
const SHARED_READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function invalidArg(message: string): Error {
  return wireError('UND_ERR_INVALID_ARG', message);
}

/** The error for a head whose field block failed the check: names the first bad field. */
function invalidField(headers: HeaderMap, peer: string): Error {
  // The framing fields' values are the pool's own (validated or dropped), not written as given.
  const bad = firstBadField(headers, (name) => name === 'content-length' || name === 'transfer-encoding' || name === 'connection' || name === 'keep-alive');
  if (bad === undefined) return invalidArg(`invalid header block for ${peer}`);
  return invalidArg(bad.part === 'name' ? `invalid header name "${bad.name}" for ${peer}` : `invalid value for header "${bad.name}" to ${peer}`);
}

function parseContentLength(value: string | string[], peer: string): number {
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text.length === 0 || text.length > 15) throw invalidArg(`invalid content-length "${text}" for ${peer}`);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) throw invalidArg(`invalid content-length "${text}" for ${peer}`);
  }
  return Number(text);
}

/** A header object's lines (framing fields left out, their Content-Length value kept), checked once as a block. */
function serializeHeaders(headers: HeaderMap, peer: string): { lines: string; declaredLength: string | string[] | undefined } {
  let lines = '';
  let count = 0;
  let declaredLength: string | string[] | undefined;
  for (const name in headers) {
    const value = headers[name] as string | string[];
    // Framing is the pool's job: it describes these bytes on this connection.
    if (name === 'content-length') {
      declaredLength = value;
      continue;
    }
    if (name === 'transfer-encoding' || name === 'connection' || name === 'keep-alive') continue;
    if (typeof value === 'string') {
      lines += `${name}: ${value}\r\n`;
      count++;
    } else {
      for (const item of value) lines += `${name}: ${item}\r\n`;
      count += value.length;
    }
  }
  if (!isFieldBlock(lines, count)) throw invalidField(headers, peer);
  return { lines, declaredLength };
}

/** One request as the pool and its connections see it: the serialized head, the body and how to settle. */
export class PendingRequest implements RequestOnConnection {
  readonly head: string;
  readonly body: Buffer | Readable | null;
  /** For a Readable body: the declared content-length, or -1 to send it chunked. */
  readonly streamLength: number;
  readonly isHead: boolean;
  readonly bodyIdleTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly startedAt: number;
  readonly signal: AbortWatch | undefined;
  /**
   * The signal's listener: a function, not this object with a `handleEvent`. Node wraps an object
   * listener in a closure of its own, and with that wrapper the whole request (head string, promise,
   * response, the exchange behind it) survived every scavenge until a full GC: 35% of the young
   * generation at 1k req/s, 8-24 ms pauses. See docs/performance.md, 2026-12-07.
   */
  readonly onAbort: (() => void) | null;
  readonly promise: Promise<WireResponse>;
  connection: UpstreamConnection | null = null;
  resent = false;
  #resolve!: (response: WireResponse) => void;
  #reject!: (err: Error) => void;

  /** Validates and serializes the head; throws UND_ERR_INVALID_ARG before any connection is touched. */
  constructor(pool: WirePool, options: WireRequestOptions, peer: string) {
    const { method, path, body, fields } = options;
    if (!isMethod(method)) throw invalidArg(`invalid method "${method}" for ${peer}`);
    if (!isRequestTarget(path)) throw invalidArg(`invalid request path "${path}" for ${peer}`);
    let lines: string;
    let declaredLength: string | string[] | undefined;
    if (fields === undefined) ({ lines, declaredLength } = serializeHeaders(options.headers ?? {}, peer));
    else {
      lines = fields.lines;
      declaredLength = fields.contentLength;
    }
    let head = `${method} ${path} HTTP/1.1\r\n${lines}`;
    let streamLength = -1;
    if (Buffer.isBuffer(body)) head += `content-length: ${body.length}\r\n`;
    else if (declaredLength !== undefined) {
      streamLength = parseContentLength(declaredLength, peer);
      head += `content-length: ${streamLength}\r\n`;
    } else if (body instanceof Readable) head += 'transfer-encoding: chunked\r\n';
    this.head = `${head}\r\n`;
    this.body = body;
    this.streamLength = streamLength;
    this.isHead = method === 'HEAD';
    this.bodyIdleTimeoutMs = options.bodyIdleTimeoutMs;
    this.headersTimeoutMs = options.headersTimeoutMs ?? 0;
    this.startedAt = options.startedAt ?? Number.NaN;
    const signal = options.signal;
    this.signal = signal;
    this.onAbort = signal === undefined ? null : () => pool.abortRequest(this, signal.reason as Error);
    this.promise = new Promise<WireResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  resolve(response: WireResponse): void {
    this.#resolve(response);
  }

  /** Settles the request with an error; the abort listener is no longer needed. */
  reject(err: Error): void {
    this.finished();
    this.#reject(err);
  }

  /** The request is over (its body ended, failed or was abandoned): stop listening for abort. */
  finished(): void {
    if (this.onAbort !== null) this.signal?.removeEventListener('abort', this.onAbort);
  }
}

/** A pool of raw keep-alive HTTP/1.1 connections to one endpoint. */
export class WirePool implements ConnectionOwner {
  readonly peer: string;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxResponseHeadBytes: number;
  readonly #connect: (onread: OnReadOpts) => Socket;
  readonly #maxConnections: number;
  readonly #connections = new Set<UpstreamConnection>();
  /** Idle connections, most recently used last (LIFO reuse keeps warm sockets warm and lets cold ones time out). */
  readonly #idle: UpstreamConnection[] = [];
  readonly #queue: PendingRequest[] = [];
  #closing = false;
  #closed: Promise<void> | null = null;
  #resolveClosed: (() => void) | null = null;

  constructor(options: WirePoolOptions) {
    this.peer = options.peer;
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.maxResponseHeadBytes = options.maxResponseHeadBytes ?? DEFAULT_MAX_RESPONSE_HEAD_BYTES;
    this.#connect = options.connect;
    this.#maxConnections = Math.max(1, options.maxConnections);
  }

  /** Connections open (busy + idle), idle, and requests waiting for a connection. */
  get stats(): { readonly open: number; readonly idle: number; readonly queued: number } {
    return { open: this.#connections.size, idle: this.#idle.length, queued: this.#queue.length };
  }

  /** Sends one request on an idle or new connection; resolves at the final response head. */
  request(options: WireRequestOptions): Promise<WireResponse> {
    if (this.#closing) return Promise.reject(this.#closedError());
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let request: PendingRequest;
    try {
      request = new PendingRequest(this, options, this.peer);
    } catch (err) {
      return Promise.reject(err);
    }
    if (request.onAbort !== null) signal?.addEventListener('abort', request.onAbort);
    this.#dispatch(request);
    return request.promise;
  }

  /** Graceful: new requests reject, in-flight ones finish, idle connections close. Resolves when all closed. */
  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    this.#closing = true;
    this.#closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));
    this.#rejectQueued(this.#closedError());
    for (const connection of this.#idle.slice()) connection.close();
    this.#resolveIfDrained();
    return this.#closed;
  }

  /** Closes everything now; in-flight requests fail with `err`. */
  destroy(err?: Error): void {
    if (!this.#closed) void this.close();
    const reason = err ?? this.#closedError();
    this.#rejectQueued(reason);
    for (const connection of [...this.#connections]) connection.destroy(reason);
  }

  /** Called by a connection whose response completed cleanly and that may carry another request. */
  connectionIdle(connection: UpstreamConnection): void {
    if (this.#closing) {
      connection.close();
      return;
    }
    const next = this.#queue.shift();
    if (next) connection.send(next);
    else this.#idle.push(connection);
  }

  /** Called once by every connection when it closes; `resend` is a request to retry on a fresh connection. */
  connectionClosed(connection: UpstreamConnection, resend: RequestOnConnection | null): void {
    this.#connections.delete(connection);
    const at = this.#idle.lastIndexOf(connection);
    if (at !== -1) this.#idle.splice(at, 1);
    if (resend) {
      const request = resend as PendingRequest;
      request.resent = true;
      this.#open(request);
    }
    if (!this.#closing && this.#queue.length > 0 && this.#connections.size < this.#maxConnections) {
      this.#open(this.#queue.shift() as PendingRequest);
    }
    this.#resolveIfDrained();
  }

  /** The request's signal fired: drop it from the queue, or fail its connection. */
  abortRequest(request: PendingRequest, reason: Error): void {
    if (request.connection) {
      request.connection.abort(request, reason);
      return;
    }
    const at = this.#queue.indexOf(request);
    if (at !== -1) {
      this.#queue.splice(at, 1);
      request.reject(reason);
    }
  }

  #dispatch(request: PendingRequest): void {
    const idle = this.#idle.pop();
    if (idle) idle.send(request);
    else if (this.#connections.size < this.#maxConnections) this.#open(request);
    else {
      this.#queue.push(request);
      // The connection's own timer runs from the moment it sends; a wait for one counts too.
      if (request.headersTimeoutMs > 0) setTimeout(() => this.#expireQueued(request), request.headersTimeoutMs).unref();
    }
  }

  #expireQueued(request: PendingRequest): void {
    const at = this.#queue.indexOf(request);
    if (at === -1) return;
    this.#queue.splice(at, 1);
    request.reject(headersTimeoutError(this.peer, request.headersTimeoutMs));
  }

  #open(request: PendingRequest): void {
    let socket: Socket;
    // Reads can only arrive once connected, after the connection object below exists.
    let connection: UpstreamConnection | null = null;
    const onread: OnReadOpts = {
      buffer: SHARED_READ_BUFFER,
      callback: (bytes: number, buffer: Uint8Array) => {
        connection?.received(buffer, bytes);
        // Backpressure pauses the socket itself (pauseReading): never stop reading from here.
        return true;
      },
    };
    try {
      socket = this.#connect(onread);
    } catch (err) {
      request.reject(wireError((err as { code?: string }).code ?? 'UND_ERR_SOCKET', `cannot open a connection to ${this.peer}: ${(err as Error).message}`, err));
      return;
    }
    connection = new UpstreamConnection(this, socket, request);
    this.#connections.add(connection);
  }

  #rejectQueued(err: Error): void {
    for (const request of this.#queue.splice(0)) request.reject(err);
  }

  #resolveIfDrained(): void {
    if (this.#closing && this.#connections.size === 0 && this.#resolveClosed) {
      this.#resolveClosed();
      this.#resolveClosed = null;
    }
  }

  #closedError(): Error {
    return wireError('UND_ERR_CLOSED', `the connection pool to ${this.peer} is closed`);
  }
}
