/**
 * One raw keep-alive HTTP/1.1 connection of a WirePool: writes a request, parses the response with
 * its own llhttp parser (created once; its callbacks route to the request in progress) and hands the
 * socket back to the pool when the response completed cleanly. The request path of the wire pool
 * reads top to bottom here. Every socket listener, timer and parser callback is per connection:
 * a request adds nothing to the socket but bytes.
 */
import { Buffer } from 'node:buffer';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { MeshletError } from '../../errors.ts';
import { DeadlineTimer, QuietWatch, socketBytes } from './lazy-timers.ts';
import { createParser, releaseParser, kOnBody, kOnHeaders, kOnHeadersComplete, kOnMessageComplete, type LlhttpError, type LlhttpParser } from './llhttp.ts';
import { type BodySource, WireBody } from './response-body.ts';
import { WireResponse } from './wire-response.ts';

/** An Error with a stable `code` (the undici codes respond.ts maps to 502/503/504). */
export function wireError(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/** The response head did not come in time (respond.ts maps the code to a 504). */
export function headersTimeoutError(peer: string, ms: number): Error {
  return wireError('UND_ERR_HEADERS_TIMEOUT', `${peer} sent no response headers within ${ms} ms`);
}

/** What a connection reports to its pool. */
export interface ConnectionOwner {
  readonly peer: string;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxResponseHeadBytes: number;
  connectionIdle(connection: UpstreamConnection): void;
  connectionClosed(connection: UpstreamConnection, resend: RequestOnConnection | null): void;
}

/** The request a connection carries (PendingRequest in upstream-pool.ts). */
export interface RequestOnConnection {
  readonly head: string;
  readonly body: Buffer | Readable | null;
  readonly streamLength: number;
  readonly isHead: boolean;
  readonly bodyIdleTimeoutMs: number;
  readonly headersTimeoutMs: number;
  /** When the headers timeout counts from (a performance.now() time); NaN: from when it is sent. */
  readonly startedAt: number;
  readonly resent: boolean;
  connection: UpstreamConnection | null;
  resolve(response: WireResponse): void;
  reject(err: Error): void;
  finished(): void;
}

const CONNECTING = 0;
const BUSY = 1;
const IDLE = 2;
const CLOSED = 3;

/** Servers close at their keep-alive timeout; stop reusing a connection this much earlier (undici does the same). */
const KEEP_ALIVE_MARGIN_MS = 1000;

/** Reads `timeout=N` (seconds) from a Keep-Alive response header, or -1. */
function keepAliveTimeoutMs(value: string): number {
  const at = value.toLowerCase().indexOf('timeout=');
  if (at === -1) return -1;
  const seconds = Number.parseInt(value.slice(at + 8), 10);
  return Number.isFinite(seconds) ? seconds * 1000 : -1;
}

/** One keep-alive connection to the pool's endpoint, carrying one request at a time. */
export class UpstreamConnection implements BodySource {
  readonly #owner: ConnectionOwner;
  readonly #socket: Socket;
  readonly #parser: LlhttpParser;
  #state = CONNECTING;
  #request: RequestOnConnection | null;
  #body: WireBody | null = null;
  /** This connection completed a response before: a reset before the next response may be a stale socket. */
  #reused = false;
  #gotResponseBytes = false;
  #requestBodySent = true;
  #streamedBytes = 0;
  #headComplete = false;
  #messageDone = false;
  #keepAlive = false;
  #executing = false;
  #readPaused = false;
  /** An error found inside a parser callback, acted on once execute() returned. */
  #deferredError: Error | null = null;
  #flushedHead: string[] | null = null;
  #trailers: string[] | null = null;
  #connectTimer: NodeJS.Timeout | null;
  /**
   * Silence while a request is answered (the body idle timeout): the socket's byte counters, looked at
   * every quarter of the limit, not a timer refreshed per chunk read or written (lazy-timers.ts).
   */
  readonly #bodyWatch = new QuietWatch(
    () => socketBytes(this.#socket),
    () => this.#onBodyTimeout(),
  );
  /** The response head's deadline: a store per request, one timer for the connection (lazy-timers.ts). */
  readonly #headTimer = new DeadlineTimer(() => this.#onHeadTimeout());
  #idleMs: number;
  /**
   * Closes the connection once idle in the pool for three quarters to all of #idleMs (never later: it
   * must close before the server's keep-alive timeout does), counted from each release; looks every
   * quarter of it, so a release is a restart of the count, not a timer operation.
   */
  readonly #idleWatch = new QuietWatch(
    () => 0,
    () => this.#onIdleTimeout(),
    'atMost',
  );

  constructor(owner: ConnectionOwner, socket: Socket, request: RequestOnConnection) {
    this.#owner = owner;
    this.#socket = socket;
    this.#request = request;
    request.connection = this;
    this.#idleMs = owner.idleTimeoutMs;
    this.#parser = createParser('response', owner.maxResponseHeadBytes);
    this.#parser[kOnHeaders] = (headers: string[]) => this.#onHeaders(headers);
    this.#parser[kOnHeadersComplete] = (_major: number, _minor: number, headers: string[] | undefined, _method: number, _url: string | undefined, statusCode: number, statusMessage: string | undefined, upgrade: boolean, shouldKeepAlive: boolean) =>
      this.#onHeadersComplete(headers, statusCode, statusMessage, upgrade, shouldKeepAlive);
    this.#parser[kOnBody] = (chunk: Buffer) => this.#body?.push(chunk);
    this.#parser[kOnMessageComplete] = () => this.#onMessageComplete();
    socket.on('error', (err: Error & { code?: string }) => this.#onSocketError(err));
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => this.#onEnd());
    socket.on('close', () => this.#fail(wireError('UND_ERR_SOCKET', `${owner.peer} closed the connection`), true));
    socket.once(socket instanceof TLSSocket ? 'secureConnect' : 'connect', () => this.#onConnected());
    this.#connectTimer = setTimeout(() => this.#onConnectTimeout(), owner.connectTimeoutMs).unref();
  }

  /** Sends a request on this idle (or just connected) connection. */
  send(request: RequestOnConnection): void {
    this.#state = BUSY;
    this.#request = request;
    request.connection = this;
    this.#gotResponseBytes = false;
    this.#headComplete = false;
    this.#keepAlive = false;
    this.#bodyWatch.watch(request.bodyIdleTimeoutMs);
    const headMs = request.headersTimeoutMs;
    if (headMs > 0) {
      const started = request.startedAt;
      if (Number.isNaN(started)) this.#headTimer.set(performance.now() + headMs);
      else this.#headTimer.set(started + headMs);
    } else this.#headTimer.set(Infinity);
    const socket = this.#socket;
    const body = request.body;
    if (body === null) {
      socket.write(request.head, 'latin1');
    } else if (Buffer.isBuffer(body)) {
      socket.cork();
      socket.write(request.head, 'latin1');
      if (body.length > 0) socket.write(body);
      socket.uncork();
    } else {
      socket.write(request.head, 'latin1');
      this.#requestBodySent = false;
      this.#streamedBytes = 0;
      body.on('data', this.#onRequestData);
      body.on('end', this.#onRequestEnd);
      body.on('error', this.#onRequestError);
    }
  }

  /** Closes without failing anyone (idle, or the pool is closing). */
  close(): void {
    this.#fail(wireError('UND_ERR_CLOSED', `the connection pool to ${this.#owner.peer} is closed`), false);
  }

  /** Closes now; a request in flight fails with `err`. */
  destroy(err: Error): void {
    this.#fail(err, false);
  }

  /** The request's signal fired: the connection is destroyed, never reused. */
  abort(request: RequestOnConnection, reason: Error): void {
    if (this.#request === request) this.#fail(reason, false);
  }

  /**
   * Bytes read into a shared buffer (the socket's `onread`): parsed now, since the buffer is reused by
   * the next read of any pooled socket.
   */
  received(buffer: Uint8Array, bytes: number): void {
    this.#onData(Buffer.from(buffer.buffer, buffer.byteOffset, bytes));
  }

  /** BodySource: the response body's consumer is not ready. */
  pauseReading(): void {
    this.#readPaused = true;
    this.#socket.pause();
  }

  /** BodySource: the consumer is ready; silence counts toward the body idle timeout again from now. */
  resumeReading(): void {
    this.#bodyWatch.restart();
    if (!this.#readPaused) return; // resume() on a flowing socket still costs a tick
    this.#readPaused = false;
    this.#socket.resume();
  }

  /** BodySource: the consumer destroyed the body mid-message. */
  abandon(err: Error): void {
    this.#body = null;
    this.#fail(err, false);
  }

  #onConnected(): void {
    if (this.#state !== CONNECTING) return;
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
    this.#socket.setNoDelay(true);
    const request = this.#request;
    if (request) this.send(request);
    else this.#release();
  }

  #onConnectTimeout(): void {
    if (this.#state !== CONNECTING) return;
    this.#fail(wireError('UND_ERR_CONNECT_TIMEOUT', `connecting to ${this.#owner.peer} timed out after ${this.#owner.connectTimeoutMs} ms`), false);
  }

  #onHeadTimeout(): void {
    const request = this.#request;
    if (this.#state !== BUSY || this.#headComplete || request === null) return;
    this.#fail(headersTimeoutError(this.#owner.peer, request.headersTimeoutMs), false);
  }

  #onBodyTimeout(): void {
    // A consumer that asked us to wait is not the upstream's silence.
    if (this.#state !== BUSY || this.#readPaused || this.#messageDone) return;
    this.#fail(wireError('UND_ERR_BODY_TIMEOUT', `${this.#owner.peer} sent nothing for ${this.#request?.bodyIdleTimeoutMs ?? 0} ms`), false);
  }

  #onData(chunk: Buffer): void {
    if (this.#state !== BUSY) {
      // An idle connection must stay silent; unsolicited bytes mean it cannot be trusted.
      if (this.#state === IDLE) this.close();
      return;
    }
    this.#gotResponseBytes = true;
    this.#executing = true;
    this.#afterExecute(this.#parser.execute(chunk));
  }

  #onEnd(): void {
    // The peer sent FIN. Pool sockets allow half-open (the cluster transports open TCP upstreams the
    // same way, whose half-close must travel), so no 'close' follows unless we end too: an idle
    // connection would stay in the pool half-closed, and the next request sent on it waited for an
    // answer that could not come until its head timeout. Before a response head it is a close: fail,
    // or resend once (the stale keep-alive race).
    if (this.#state !== BUSY || !this.#headComplete) {
      this.#fail(wireError('UND_ERR_SOCKET', `${this.#owner.peer} closed the connection`), true);
      return;
    }
    // A close-delimited body ends here; any other body was cut short.
    this.#executing = true;
    this.#parser.finish();
    this.#executing = false;
    // finish() may have run callbacks that closed this connection.
    if ((this.#state as number) === CLOSED) {
      this.#freeParser();
    } else if (this.#messageDone) {
      this.#keepAlive = false;
      this.#finishResponse();
    } else {
      this.#fail(wireError('UND_ERR_SOCKET', `${this.#owner.peer} closed the connection before the response was complete`), false);
    }
  }

  #afterExecute(result: number | LlhttpError): void {
    this.#executing = false;
    if (this.#state === CLOSED) {
      this.#freeParser();
    } else if (this.#messageDone) {
      // Bytes after a complete response (garbage, or a response nobody asked for): keep this one, not the connection.
      if (typeof result !== 'number' || this.#deferredError) this.#keepAlive = false;
      this.#deferredError = null;
      this.#finishResponse();
    } else if (typeof result !== 'number') {
      this.#fail(wireError(result.code, `${this.#owner.peer} sent an invalid response: ${result.reason ?? result.message}`, result), false);
    } else if (this.#deferredError) {
      this.#fail(this.#deferredError, false);
    }
  }

  #onSocketError(err: Error & { code?: string }): void {
    if (this.#state === CLOSED) return;
    // Already typed and naming the peer (the mTLS identity check): keep it, so it maps to its own status.
    if (err instanceof MeshletError) return this.#fail(err, true);
    const phase = this.#state === CONNECTING ? 'connecting to' : 'talking to';
    this.#fail(wireError(err.code ?? 'UND_ERR_SOCKET', `${phase} ${this.#owner.peer} failed: ${err.message}`, err), true);
  }

  #onHeaders(headers: string[]): void {
    const into = this.#headComplete ? (this.#trailers ??= []) : (this.#flushedHead ??= []);
    for (let i = 0; i < headers.length; i++) into.push(headers[i] as string);
  }

  #onHeadersComplete(headers: string[] | undefined, statusCode: number, statusMessage: string | undefined, upgrade: boolean, shouldKeepAlive: boolean): number {
    const request = this.#request;
    const raw = headers ?? this.#flushedHead ?? [];
    this.#flushedHead = null;
    if (request === null || this.#headComplete) {
      this.#deferredError ??= wireError('UND_ERR_SOCKET', `${this.#owner.peer} sent a response nobody asked for`);
      return 1;
    }
    if (statusCode === 101 || upgrade) {
      this.#deferredError ??= wireError('UND_ERR_INFO', `${this.#owner.peer} answered ${statusCode} (protocol switch) to a request that did not ask to upgrade`);
      return 1;
    }
    if (statusCode < 200) {
      // 100 Continue, 103 Early Hints: the final response follows on the same connection.
      return 1;
    }
    this.#headComplete = true;
    this.#headTimer.set(Infinity);
    this.#keepAlive = shouldKeepAlive;
    const body = new WireBody(this);
    this.#body = body;
    this.#noteReuseFields(raw);
    request.resolve(new WireResponse(statusCode, statusMessage ?? '', raw, body));
    return request.isHead ? 1 : 0;
  }

  /** What the head says about reusing this connection: `Connection: close`, or a `Keep-Alive` timeout hint. */
  #noteReuseFields(raw: string[]): void {
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i] as string;
      // Both names are ten characters long: most fields are ruled out without lowercasing.
      if (name.length !== 10) continue;
      const lower = name.toLowerCase();
      if (lower === 'connection') {
        if ((raw[i + 1] as string).toLowerCase().includes('close')) this.#keepAlive = false;
      } else if (lower === 'keep-alive') this.#applyKeepAliveHint(raw[i + 1] as string);
    }
  }

  #applyKeepAliveHint(value: string): void {
    const serverMs = keepAliveTimeoutMs(value);
    if (serverMs < 0) return;
    const ms = Math.min(this.#owner.idleTimeoutMs, serverMs - KEEP_ALIVE_MARGIN_MS);
    if (ms <= 0) this.#keepAlive = false;
    else this.#idleMs = ms; // the idle watch takes it the next time the connection goes idle
  }

  #onMessageComplete(): void {
    // The end of a 1xx (or a refused 101) is not the end of the final response.
    if (this.#headComplete) this.#messageDone = true;
  }

  /** The response arrived whole: back to the pool if it may carry another request, then end the body. */
  #finishResponse(): void {
    const request = this.#request as RequestOnConnection;
    const body = this.#body as WireBody;
    const trailers = this.#trailers ? this.#trailerRecord(this.#trailers) : undefined;
    const reusable = this.#keepAlive && this.#requestBodySent;
    this.#detachRequest();
    this.#messageDone = false;
    this.#trailers = null;
    this.#reused = true;
    request.finished();
    if (reusable) this.#release();
    else this.close();
    body.complete(trailers);
  }

  #trailerRecord(raw: string[]): Record<string, string> {
    const out: Record<string, string> = Object.create(null);
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase();
      const prior = out[name];
      out[name] = prior === undefined ? (raw[i + 1] as string) : `${prior}, ${raw[i + 1] as string}`;
    }
    return out;
  }

  #release(): void {
    this.#state = IDLE;
    if (this.#readPaused) this.resumeReading();
    this.#idleWatch.watch(this.#idleMs);
    this.#owner.connectionIdle(this);
  }

  /** Called at every look once #idleMs is (nearly) up since the last release: only a connection still idle is closed. */
  #onIdleTimeout(): void {
    if (this.#state === IDLE) this.close();
  }

  /**
   * The one way a connection ends. A request not yet answered either fails with `err` or, when this
   * reused connection died before any response byte (`mayResend`: a reset or close, the stale
   * keep-alive race) and its body can be sent again, is handed to the pool to resend once.
   */
  #fail(err: Error, mayResend: boolean): void {
    if (this.#state === CLOSED) return;
    const request = this.#request;
    const body = this.#body;
    const staleRace = mayResend && this.#reused && !this.#gotResponseBytes && request !== null && !request.resent && !(request.body instanceof Readable);
    this.#detachRequest();
    this.#state = CLOSED;
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    this.#bodyWatch.stop();
    // The head timer too: armed, it would keep this closed connection (and its parser) alive until it fires.
    this.#headTimer.clear();
    this.#idleWatch.stop();
    this.#socket.destroy();
    if (!this.#executing) this.#freeParser();
    this.#owner.connectionClosed(this, staleRace ? request : null);
    if (staleRace) return;
    if (body) {
      request?.finished();
      body.fail(err);
    } else request?.reject(err);
  }

  #detachRequest(): void {
    const request = this.#request;
    if (request === null) return;
    if (request.body instanceof Readable && !this.#requestBodySent) this.#stopStreaming(request.body);
    request.connection = null;
    this.#request = null;
    this.#body = null;
  }

  #freeParser(): void {
    releaseParser(this.#parser);
  }

  // Request body streaming: listeners bound once per connection, attached to each streamed body.

  readonly #onRequestData = (chunk: Buffer | string): void => {
    const request = this.#request as RequestOnConnection;
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (data.length === 0) return; // an empty chunk would end a chunked body
    this.#streamedBytes += data.length;
    if (request.streamLength >= 0 && this.#streamedBytes > request.streamLength) {
      this.#fail(wireError('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', `request body to ${this.#owner.peer} is longer than its content-length ${request.streamLength}`), false);
      return;
    }
    const socket = this.#socket;
    let ok: boolean;
    if (request.streamLength >= 0) ok = socket.write(data);
    else {
      socket.cork();
      socket.write(`${data.length.toString(16)}\r\n`, 'latin1');
      socket.write(data);
      ok = socket.write('\r\n', 'latin1');
      socket.uncork();
    }
    if (!ok) {
      (request.body as Readable).pause();
      this.#socket.once('drain', this.#onSocketDrain);
    }
  };

  readonly #onSocketDrain = (): void => {
    const body = this.#request?.body;
    if (body instanceof Readable && !this.#requestBodySent) body.resume();
  };

  readonly #onRequestEnd = (): void => {
    const request = this.#request as RequestOnConnection;
    if (request.streamLength >= 0 && this.#streamedBytes !== request.streamLength) {
      this.#fail(wireError('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', `request body to ${this.#owner.peer} ended after ${this.#streamedBytes} of ${request.streamLength} bytes`), false);
      return;
    }
    if (request.streamLength < 0) this.#socket.write('0\r\n\r\n', 'latin1');
    this.#stopStreaming(request.body as Readable);
  };

  readonly #onRequestError = (err: Error): void => {
    this.#fail(wireError((err as { code?: string }).code ?? 'UND_ERR_ABORTED', `request body to ${this.#owner.peer} failed: ${err.message}`, err), false);
  };

  #stopStreaming(body: Readable): void {
    this.#requestBodySent = true;
    body.off('data', this.#onRequestData);
    body.off('end', this.#onRequestEnd);
    body.off('error', this.#onRequestError);
    // Not read to its end: it may still fail (its client left), and an 'error' nobody listens for ends the process.
    if (!body.readableEnded && body.listenerCount('error') === 0) body.on('error', ignoreLateError);
    this.#socket.off('drain', this.#onSocketDrain);
  }
}

/** Late failures of a request body the connection stopped reading: its own reader reports them, if any. */
function ignoreLateError(): void {}
