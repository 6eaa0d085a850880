/**
 * HTTP/1.1 served on one raw socket (net.Socket or tls.TLSSocket) with llhttp, without node:http's
 * IncomingMessage/ServerResponse streams. One parser per connection with its callbacks installed once;
 * a head timer armed only for a head that did not arrive whole, and one QuietWatch per connection for the
 * idle and keep-alive limits (see #onQuiet), so a request costs no timer operation. Pipelined
 * requests are handed over in order and answered in order; malformed or slow heads are answered here
 * (400, 408, 431) and never reach the handler.
 */
import { Buffer } from 'node:buffer';
import process from 'node:process';
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { meshError, type MeshletError } from '../../errors.ts';
import { writeRawError } from '../upgrade.ts';
import { HTTPParser, METHODS, createParser, releaseParser, kOnBody, kOnExecute, kOnHeaders, kOnHeadersComplete, kOnMessageComplete, type LlhttpError, type LlhttpParser } from './llhttp.ts';
import { Fifo } from './fifo.ts';
import { QuietWatch, socketBytes } from './lazy-timers.ts';
import { WireReply, type ReplyChannel } from './reply.ts';
import { ParsedRequest, RequestBody, scanHead, type HeadFacts } from './request.ts';

export interface WireRequest {
  readonly method: string;
  /** The request target; the router rewrites it (route rewrites, absolute-form to origin-form). */
  url: string;
  readonly httpVersion: string;
  /** Same shape as node:http's req.headers: lowercase names; duplicates combined as node does. Built lazily on first access. */
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  /** `rawHeaders` while `headers` was never built (nothing can have edited it): a proxy may relay them as they are. */
  readonly untouchedRawHeaders?: readonly string[] | undefined;
  readonly socket: Socket;
  /** The body as a stream, or null when the request has none (no transfer-encoding and no or zero content-length). */
  readonly body: Readable | null;
}

export interface WireServerOptions {
  /** Names the listener in errors and logs. */
  readonly name: string;
  /** Over -> 431. Read when the connection starts (the parser is sized once). */
  readonly maxRequestHeadBytes: number;
  /** The whole request head must arrive within this (from its first byte, or connection start); else 408 + close. 0 disables. */
  readonly headTimeoutMs: number;
  /**
   * A keep-alive connection waiting for its next request is closed after this (node:http's
   * keepAliveTimeout, 5 s), or up to a quarter of the shorter of the two limits later.
   */
  readonly keepAliveTimeoutMs: number;
  /** Any connection silent this long is destroyed (up to a quarter of the shorter limit later); 0 disables. */
  readonly idleTimeoutMs: number;
  readonly onRequest: (req: WireRequest, reply: WireReply) => void;
  /** Upgrade requests (Upgrade header, not h2c, no body) go here with the bytes after the head; absent -> they are served via onRequest (RFC 9110 7.8). */
  readonly onUpgrade?: ((req: WireRequest, socket: Socket, head: Buffer) => void) | undefined;
}

/** llhttp reports message starts here (Node exports the slot; llhttp.ts does not name it). */
const kOnMessageBegin = (HTTPParser as unknown as { kOnMessageBegin: number }).kOnMessageBegin;
/**
 * Unanswered requests beyond this stop reading the socket and pause the parser, so a pipelining client
 * cannot queue without bound: not even the requests already read in one chunk are parsed.
 */
const MAX_QUEUED = 2;
/** What kOnHeadersComplete returns to make llhttp stop after this head (execute() then fails with HPE_PAUSED). */
const PAUSE_PARSER = 21;

/** The keep-alive head lines for a timeout, in node:http's format: whole seconds, no hint when the timeout is off. */
function keepAliveLinesFor(timeoutMs: number): string {
  return timeoutMs > 0 ? `connection: keep-alive\r\nkeep-alive: timeout=${Math.floor(timeoutMs / 1000)}\r\n` : 'connection: keep-alive\r\n';
}

/** An upgrade request waiting for the earlier replies, with the bytes that followed its head. */
interface PendingUpgrade {
  readonly request: ParsedRequest;
  head: Buffer;
  readonly handler: NonNullable<WireServerOptions['onUpgrade']>;
}

/** What net.Socket keeps private and this server needs once the parser reads the socket itself. */
interface SocketInternals {
  readonly _handle: { readonly isStreamBase?: boolean } | null;
}

type Phase = 'idle' | 'head' | 'body';
type State = 'open' | 'closing' | 'closed' | 'upgraded';

function connectionReset(message: string): Error {
  return Object.assign(new Error(message), { code: 'ECONNRESET' });
}

/** Serves HTTP/1.1 on one accepted socket until it closes. */
export class WireConnection implements ReplyChannel {
  readonly socket: Socket;
  /** ReplyChannel: set from the options' keep-alive timeout, at start and when setOptions changes it. */
  keepAliveLines: string;
  #options: WireServerOptions;
  readonly #parser: LlhttpParser;
  #state: State = 'open';
  /** False once a parse error or head timeout was met: nothing more is read as HTTP. */
  #parsing = true;
  #phase: Phase = 'head';
  /** Header pairs and URL flushed early by llhttp (kOnHeaders), as node's _http_common accumulates them. */
  #rawHeaders: string[] = [];
  #url = '';
  /** Unanswered requests' replies, oldest (the one writing) first. */
  readonly #replies = new Fifo<WireReply>();
  /** Requests parsed during one execute(), handed to the handler after it returns; null = answer 417. */
  readonly #readyRequests: (ParsedRequest | null)[] = [];
  readonly #readyReplies: (WireReply | null)[] = [];
  /** Entries of the two arrays above in use: they keep their storage between reads (setting `length = 0` frees it). */
  #readyCount = 0;
  /** The request whose body is being parsed, and its reply. */
  #body: RequestBody | null = null;
  #bodyReply: WireReply | null = null;
  /** Its reply finished first: the rest of the body is read and dropped (node's req._dump). */
  #dumpingBody = false;
  /** The body stream asked for a pause. */
  #bodyFull = false;
  #paused = false;
  #draining = false;
  /** An error response owed once the earlier replies are written. */
  #deferredError: MeshletError | null = null;
  #upgrade: PendingUpgrade | null = null;
  /** Why the head callback refused the last head (llhttp then reports HPE_CB_HEADERS_COMPLETE). */
  #refusedHead: MeshletError | null = null;
  /** The parser stopped after a head because too many requests are unanswered; `#heldBytes` are the unparsed rest. */
  #parserPaused = false;
  #heldBytes: Buffer | null = null;
  #resumeScheduled = false;
  #headTimer: NodeJS.Timeout | null = null;
  /**
   * Whether the head in progress has its deadline. A head is timed from the end of the read it began
   * in (microseconds after its first byte), and only if still incomplete then: most heads arrive whole
   * in one read and never need the timer refreshed.
   */
  #headArmed = false;
  /**
   * The idle and keep-alive limits, enforced by one QuietWatch per connection over the socket's byte
   * counters, set to the shorter limit, instead of the socket's idle timeout and a keep-alive timer:
   * node refreshed the first on every read and write and this server the second per request, and each
   * refresh() reads the clock and looks its duration up in a dictionary (~1.9k instructions per request
   * in all). A limit is never met early, and at most a quarter of the shorter limit late. See #onQuiet.
   */
  readonly #quiet = new QuietWatch(
    () => socketBytes(this.socket),
    (quietMs) => this.#onQuiet(quietMs),
  );
  /**
   * The native parser reads the socket (consume): no Readable, 'data' event or next-tick per read,
   * ~10% of a small request's CPU. Anything off the plain request/response path (a pause, a parse
   * error, an upgrade, closing) gives the socket back to 'data' events for good, where all of that is
   * handled; see #leaveNative.
   */
  #native = false;
  /** During the last native read a head was an Upgrade or CONNECT: llhttp stopped after it, the rest of the chunk is unparsed. */
  #stoppedAfterHead = false;
  readonly #wantBody = (): void => this.#resumeBody();

  constructor(socket: Socket, options: WireServerOptions) {
    this.socket = socket;
    this.#options = options;
    this.keepAliveLines = keepAliveLinesFor(options.keepAliveTimeoutMs);
    const parser = (this.#parser = createParser('request', options.maxRequestHeadBytes));
    parser[kOnMessageBegin] = this.#onMessageBegin;
    parser[kOnHeaders] = this.#onHeaders;
    parser[kOnHeadersComplete] = this.#onHeadersComplete;
    parser[kOnBody] = this.#onBody;
    parser[kOnMessageComplete] = this.#onMessageComplete;
    socket.setNoDelay(true);
    for (const [event, listener] of this.#socketListeners()) socket.on(event, listener);
    this.#startQuietLooks();
    // Bytes already buffered (none for a fresh socket) would be parsed after the ones the parser reads.
    const handle = (socket as unknown as SocketInternals)._handle;
    if (handle?.isStreamBase === true && socket.readableLength === 0) {
      parser[kOnExecute] = this.#onExecute;
      parser.consume(handle);
      this.#native = true;
    }
    // The first head is timed from connection start, so a client that connects and says nothing is cut too.
    this.#armHeadTimer();
    this.#headArmed = true;
    socket.resume();
  }

  /** Requests received and not yet fully answered. */
  get inFlight(): number {
    return this.#replies.length;
  }

  /** Drain: responses still to be written carry `connection: close`; the socket closes once idle (now, if idle). */
  closeWhenIdle(): void {
    if (this.#state !== 'open') return;
    this.#draining = true;
    for (const reply of this.#replies.toArray()) reply.closeConnectionAfter();
    if (this.#replies.length === 0 && this.#upgrade === null) this.#closeAfterWrites();
  }

  destroy(): void {
    if (this.#state === 'upgraded') return;
    this.socket.destroy();
  }

  /** Replaces the options for requests that start from now on (hot reload swaps the handler). */
  setOptions(options: WireServerOptions): void {
    const previous = this.#options;
    this.#options = options;
    if ((options.idleTimeoutMs !== previous.idleTimeoutMs || options.keepAliveTimeoutMs !== previous.keepAliveTimeoutMs) && this.#state === 'open') this.#startQuietLooks();
    if (options.headTimeoutMs !== previous.headTimeoutMs) this.#headTimer = this.#clearTimer(this.#headTimer);
    if (options.keepAliveTimeoutMs !== previous.keepAliveTimeoutMs) this.keepAliveLines = keepAliveLinesFor(options.keepAliveTimeoutMs);
  }

  // ReplyChannel

  replyFinished(reply: WireReply): void {
    if (this.#replies.first() === reply) this.#replies.shift();
    if (reply === this.#bodyReply && this.#body !== null) {
      this.#dumpingBody = true;
      this.#bodyFull = false;
    }
    if (!reply.keepAlive || (this.#replies.length === 0 && this.#draining)) {
      this.#closeAfterWrites();
      return;
    }
    const next = this.#replies.first();
    if (next !== undefined) next.activate();
    else if (this.#deferredError !== null) this.#writeError(this.#deferredError);
    else if (this.#upgrade !== null) this.#handOff();
    this.#updateFlow();
  }

  replyDestroyed(_reply: WireReply): void {
    this.destroy();
  }

  // Parser callbacks (installed once)

  readonly #onMessageBegin = (): void => {
    if (this.#phase !== 'idle') return;
    this.#phase = 'head';
    this.#headArmed = false;
  };

  readonly #onHeaders = (headers: string[], url: string): void => {
    for (const item of headers) this.#rawHeaders.push(item);
    this.#url += url;
  };

  readonly #onHeadersComplete = (
    versionMajor: number,
    versionMinor: number,
    headers: string[] | undefined,
    methodIndex: number,
    url: string | undefined,
    _statusCode: unknown,
    _statusMessage: unknown,
    upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number => {
    if (headers === undefined) {
      headers = this.#rawHeaders;
      this.#rawHeaders = [];
    }
    if (url === undefined) {
      url = this.#url;
      this.#url = '';
    }
    this.#phase = 'body';
    if (upgrade) this.#stoppedAfterHead = true;
    const method = METHODS[methodIndex] ?? 'UNKNOWN';
    const http10 = versionMajor === 1 && versionMinor === 0;
    const httpVersion = versionMajor === 1 && versionMinor === 1 ? '1.1' : `${versionMajor}.${versionMinor}`;
    const head = scanHead(headers);
    const hostProblem = this.#hostProblem(head, versionMajor, versionMinor);
    if (hostProblem !== null) {
      this.#refusedHead = meshError('BAD_REQUEST', `malformed request on listener ${this.#options.name}: ${hostProblem}`);
      // -1 makes llhttp stop with an error: nothing after this head is parsed as HTTP.
      return -1;
    }
    const body = head.hasBody ? new RequestBody(this.#wantBody) : null;
    const request = new ParsedRequest(method, url, httpVersion, headers, this.socket, body);
    const onUpgrade = this.#options.onUpgrade;
    if (upgrade && onUpgrade !== undefined && method !== 'CONNECT' && !head.hasBody && head.upgrade !== undefined && head.upgrade.trim().toLowerCase() !== 'h2c') {
      this.#upgrade = { request, head: EMPTY, handler: onUpgrade };
      return 0;
    }
    // A CONNECT served as a plain request: what follows its head is tunnel bytes, not HTTP.
    const reply = new WireReply(this, method === 'HEAD', http10, shouldKeepAlive && !this.#draining && method !== 'CONNECT');
    this.#body = body;
    this.#bodyReply = reply;
    this.#dumpingBody = false;
    this.#replies.push(reply);
    if (this.#replies.length === 1) reply.activate();
    let accepted = true;
    if (head.expect !== undefined) {
      if (head.expect.toLowerCase() !== '100-continue') accepted = false;
      else if (!http10) reply.sendContinue();
    }
    const ready = this.#readyCount++;
    this.#readyRequests[ready] = accepted ? request : null;
    this.#readyReplies[ready] = reply;
    // Heads llhttp stops after anyway (CONNECT, Upgrade) keep their own return value.
    return this.#replies.length > MAX_QUEUED && !upgrade ? PAUSE_PARSER : 0;
  };

  readonly #onBody = (chunk: Buffer): void => {
    const body = this.#body;
    // A body its reader destroyed never calls _read again: drop the rest rather than pause for good.
    if (body === null || this.#dumpingBody || body.destroyed) return;
    if (!body.push(chunk)) this.#bodyFull = true;
  };

  readonly #onMessageComplete = (): void => {
    // Trailers were flushed through kOnHeaders; node drops them unless asked, and so does this server.
    this.#rawHeaders = [];
    this.#url = '';
    this.#phase = 'idle';
    const body = this.#body;
    this.#body = null;
    this.#bodyReply = null;
    this.#bodyFull = false;
    if (body !== null) body.push(null);
  };

  // Socket events (installed once)

  readonly #onData = (data: Buffer): void => {
    if (!this.#parsing || this.#state !== 'open' || this.#upgrade !== null) return;
    // Chunks already read when the socket was paused wait behind the bytes the paused parser holds.
    if (this.#parserPaused) {
      this.#heldBytes = this.#heldBytes === null ? data : Buffer.concat([this.#heldBytes, data]);
      return;
    }
    this.#parse(data);
  };

  /**
   * The native parser parsed one read. The plain case (whole chunk parsed, no pause, error or
   * Upgrade) only dispatches; anything else continues in JS on a copy of the chunk, as #parse would.
   */
  readonly #onExecute = (parsed: number | LlhttpError): void => {
    const stopped = this.#stoppedAfterHead;
    this.#stoppedAfterHead = false;
    if (typeof parsed === 'number' && !stopped) {
      this.#afterParse(null);
      return;
    }
    const chunk = this.#parser.getCurrentBuffer();
    this.#leaveNative();
    this.#parseFrom(chunk, parsed);
  };

  /** Runs llhttp over `data`, hands the requests it completed to the handler, and answers a parse error. */
  #parse(data: Buffer): void {
    // At least once: an empty buffer still lets a resumed parser finish its message.
    this.#parseFrom(data, this.#parser.execute(data));
  }

  /** Goes on from execute()'s result for the start of `data`: parses the rest, then #afterParse. */
  #parseFrom(data: Buffer, first: number | LlhttpError): void {
    let offset = 0;
    let failure: LlhttpError | null = null;
    let parsed = first;
    for (;;) {
      if (typeof parsed !== 'number' && parsed.code === 'HPE_PAUSED') {
        this.#parserPaused = true;
        this.#heldBytes = data.subarray(offset + parsed.bytesParsed);
        break;
      }
      if (typeof parsed !== 'number') {
        failure = parsed;
        break;
      }
      offset += parsed;
      // The parser callbacks may have set it during execute(); TypeScript cannot see that.
      const upgrade = this.#upgrade as PendingUpgrade | null;
      if (upgrade !== null) {
        upgrade.head = data.subarray(offset);
        break;
      }
      // llhttp stops after every Upgrade head; one not taken is served as HTTP and parsing goes on.
      if (parsed === 0 || offset >= data.length) break;
      parsed = this.#parser.execute(data.subarray(offset));
    }
    this.#afterParse(failure);
  }

  /** After a parse: hands over the requests completed, answers a parse error, starts a pending upgrade. */
  #afterParse(failure: LlhttpError | null): void {
    if (this.#phase === 'head' && !this.#headArmed) {
      this.#headArmed = true;
      this.#armHeadTimer();
    }
    const error = failure === null ? null : this.#parseError(failure);
    // A request whose body the error cut is never handed over: its reply is dropped before dispatch.
    const cutStarted = error !== null && this.#abandonCutRequest(error);
    this.#dispatchReady();
    if (error !== null) this.#failParsing(error, cutStarted);
    else if (this.#upgrade !== null && this.#replies.length === 0) this.#handOff();
    this.#updateFlow();
  }

  /**
   * Parses what the paused parser held once the queue is short again. Deferred a tick: the queue shrinks
   * inside reply.end(), possibly while the handler runs inside a parse.
   */
  readonly #resumeParsing = (): void => {
    this.#resumeScheduled = false;
    if (!this.#parserPaused || this.#state !== 'open' || !this.#parsing) return;
    if (this.#replies.length > MAX_QUEUED) return;
    this.#parserPaused = false;
    this.#parser.resume();
    const held = this.#heldBytes ?? EMPTY;
    this.#heldBytes = null;
    // Even with nothing held, llhttp finishes the message it paused in (a body-less request completes).
    this.#parse(held);
  };

  /** The client half-closed: like node:http (httpAllowHalfOpen off), it is gone and its unanswered requests are abandoned. */
  readonly #onEnd = (): void => {
    if (this.#state !== 'open') return;
    if (this.#phase === 'body') this.socket.destroy();
    else this.#closeAfterWrites();
  };

  /** Socket errors (ECONNRESET, EPIPE, TLS) end the connection; 'close' follows and cleans up. */
  readonly #onError = (err: Error): void => {
    this.#socketError = err;
  };
  #socketError: Error | null = null;

  readonly #onClose = (): void => {
    if (this.#state === 'upgraded') return;
    this.#state = 'closed';
    this.#headTimer = this.#clearTimer(this.#headTimer);
    this.#quiet.stop();
    const body = this.#body;
    this.#body = null;
    if (body !== null) {
      const reason = this.#socketError ? `: ${this.#socketError.message}` : '';
      body.destroy(connectionReset(`client closed the connection mid-body on listener ${this.#options.name}${reason}`));
    }
    for (const reply of this.#replies.takeAll()) reply.abandon();
    this.#leaveNative();
    releaseParser(this.#parser);
  };

  readonly #onDrain = (): void => {
    this.#replies.first()?.socketDrained();
  };

  // Internals

  /** Hands the requests parsed by the last execute() to the handler, after the parser is done with its buffer. */
  #dispatchReady(): void {
    if (this.#readyCount === 0) return;
    const requests = this.#readyRequests;
    const replies = this.#readyReplies;
    const onRequest = this.#options.onRequest;
    for (let i = 0; i < this.#readyCount; i++) {
      const request = requests[i];
      const reply = replies[i] as WireReply;
      // Not kept alive by the slots once handed over.
      requests[i] = null;
      replies[i] = null;
      if (reply.destroyed) continue;
      if (request !== undefined && request !== null) onRequest(request, reply);
      else reply.writeHead(417, { connection: 'close', 'content-length': 0 }).end();
    }
    this.#readyCount = 0;
  }

  /**
   * RFC 9112 3.2: an HTTP/1.1 request without Host, or any request with two Host lines, gets a 400.
   * node:http refuses the first (requireHostHeader); the second is where a front and a back end can
   * pick different hosts (routing and cache confusion), so this server refuses it too.
   */
  #hostProblem(head: HeadFacts, versionMajor: number, versionMinor: number): string | null {
    if (head.hostLines > 1) return 'more than one Host header';
    if (head.hostLines === 0 && versionMajor === 1 && versionMinor === 1) return 'HTTP/1.1 request without a Host header';
    return null;
  }

  #parseError(err: LlhttpError): MeshletError {
    const refused = this.#refusedHead;
    if (refused !== null) {
      this.#refusedHead = null;
      return refused;
    }
    const name = this.#options.name;
    if (err.code === 'HPE_HEADER_OVERFLOW') return meshError('HEADERS_TOO_LARGE', `request head larger than the limit on listener ${name}`, err);
    return meshError('BAD_REQUEST', `malformed request on listener ${name}: ${err.code}${err.reason ? ` (${err.reason})` : ''}`, err);
  }

  /**
   * Stops reading HTTP and answers with `error`: now when nothing is unanswered, after the earlier replies
   * when none of them started, or by cutting the connection when a response is already under way.
   */
  #failParsing(error: MeshletError, cutStarted = false): void {
    this.#parsing = false;
    this.#leaveNative();
    this.#headTimer = this.#clearTimer(this.#headTimer);
    if (this.#abandonCutRequest(error) || cutStarted || this.#replies.first()?.headersSent) {
      this.socket.destroy();
      return;
    }
    if (this.#replies.length === 0) this.#writeError(error);
    else this.#deferredError = error;
  }

  /**
   * The request whose body `error` cut can never be answered properly: its body errors, its reply is
   * dropped. True when that reply had already started (then only cutting the connection is honest).
   */
  #abandonCutRequest(error: MeshletError): boolean {
    const body = this.#body;
    const cut = this.#bodyReply;
    this.#body = null;
    this.#bodyReply = null;
    if (body !== null) body.destroy(error);
    if (cut === null || cut.writableFinished) return false;
    if (cut.headersSent) return true;
    this.#replies.remove(cut);
    cut.abandon();
    return false;
  }

  #writeError(error: MeshletError): void {
    this.#state = 'closing';
    this.#leaveNative();
    writeRawError(this.socket, error);
    this.socket.destroySoon();
  }

  /** Ends the connection once written; requests pipelined behind a closing reply are dropped. */
  #closeAfterWrites(): void {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    this.#leaveNative();
    this.#headTimer = this.#clearTimer(this.#headTimer);
    // The looks go on: a client that stops reading is still cut at the idle limit.
    for (const reply of this.#replies.takeAll()) reply.abandon();
    this.socket.destroySoon();
  }

  /** Every listener this connection keeps on its socket (added once, all removed on hand-off). */
  #socketListeners(): [string, (...args: any[]) => void][] {
    return [
      ['data', this.#onData],
      ['end', this.#onEnd],
      ['error', this.#onError],
      ['close', this.#onClose],
      ['drain', this.#onDrain],
    ];
  }

  /** Gives the socket to the upgrade handler, with no listener or timer of this connection left on it. */
  #handOff(): void {
    const upgrade = this.#upgrade;
    if (upgrade === null || this.#state !== 'open') return;
    this.#state = 'upgraded';
    const socket = this.socket;
    for (const [event, listener] of this.#socketListeners()) socket.removeListener(event, listener);
    this.#headTimer = this.#clearTimer(this.#headTimer);
    this.#quiet.stop();
    this.#leaveNative();
    releaseParser(this.#parser);
    // Like node:http: the new owner starts the flow by attaching its own 'data' listener or pipe.
    (socket as { readableFlowing: boolean | null }).readableFlowing = null;
    upgrade.handler(upgrade.request, socket, upgrade.head);
  }

  /** Reads only while the handler keeps up: body backpressure, a deep pipeline, or a pending upgrade/error pause the socket. */
  #updateFlow(): void {
    if (this.#state !== 'open') return;
    const queueFull = this.#replies.length > MAX_QUEUED;
    if (this.#parserPaused && !queueFull && !this.#resumeScheduled) {
      this.#resumeScheduled = true;
      process.nextTick(this.#resumeParsing);
    }
    const hold = this.#bodyFull || queueFull || this.#parserPaused || this.#upgrade !== null || this.#deferredError !== null;
    if (hold === this.#paused) return;
    this.#paused = hold;
    if (hold) {
      // A consumed socket ignores pause(): the native parser would go on reading.
      this.#leaveNative();
      this.socket.pause();
    } else this.socket.resume();
  }

  /**
   * Gives the socket's reads back to its 'data' events (#onData) for the rest of the connection: the
   * state machine for pauses, errors, upgrades and closing lives there. The parser stays as it is.
   */
  #leaveNative(): void {
    if (!this.#native) return;
    this.#native = false;
    this.#parser.unconsume();
  }

  #resumeBody(): void {
    if (!this.#bodyFull) return;
    this.#bodyFull = false;
    this.#updateFlow();
  }

  #armHeadTimer(): void {
    const ms = this.#options.headTimeoutMs;
    if (ms <= 0) return;
    if (this.#headTimer === null) this.#headTimer = setTimeout(this.#onHeadTimeout, ms).unref();
    else this.#headTimer.refresh();
  }

  /** (Re)starts counting silence against the shorter limit; no looks when both are off. */
  #startQuietLooks(): void {
    const { idleTimeoutMs, keepAliveTimeoutMs } = this.#options;
    const shorter = Math.min(idleTimeoutMs > 0 ? idleTimeoutMs : Infinity, keepAliveTimeoutMs > 0 ? keepAliveTimeoutMs : Infinity);
    this.#quiet.watch(shorter === Infinity ? 0 : shorter);
  }

  /**
   * The connection has been silent `quietMs` (at least the shorter limit). Idle applies in every state
   * (a closing connection whose client stopped reading is cut too); keep-alive only to an open
   * connection with no request in progress.
   */
  #onQuiet(quietMs: number): void {
    const { idleTimeoutMs, keepAliveTimeoutMs } = this.#options;
    if (idleTimeoutMs > 0 && quietMs >= idleTimeoutMs) this.socket.destroy();
    else if (keepAliveTimeoutMs > 0 && quietMs >= keepAliveTimeoutMs && this.#state === 'open' && this.#phase === 'idle' && this.#replies.length === 0 && this.#upgrade === null) this.socket.destroy();
  }

  /** Fires headTimeoutMs after the latest head started; only a head still incomplete is late. */
  readonly #onHeadTimeout = (): void => {
    if (this.#state !== 'open' || !this.#parsing || this.#phase !== 'head') return;
    this.#failParsing(meshError('REQUEST_TIMEOUT', `request head not received in time on listener ${this.#options.name}`));
    this.#updateFlow();
  };

  #clearTimer(timer: NodeJS.Timeout | null): null {
    if (timer !== null) clearTimeout(timer);
    return null;
  }
}

const EMPTY = Buffer.alloc(0);
