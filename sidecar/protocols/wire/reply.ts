/**
 * The response to one request on a raw-socket HTTP/1.1 connection, written straight to the socket
 * (no ServerResponse, no stream machinery). The head is serialized once into a latin1 string and leaves
 * with the first body bytes, so `writeHead` + `end(body)` is one syscall. A reply behind an earlier
 * pipelined one buffers its bytes until the connection makes it active.
 */
import { Buffer } from 'node:buffer';
import process from 'node:process';
import { EventEmitter } from 'node:events';
import { STATUS_CODES } from '../../node-http.ts';
import type { Socket } from 'node:net';
import { meshError } from '../../errors.ts';
import { firstBadField, isFieldBlock } from './field-syntax.ts';

/** What a reply needs from the connection it answers on. */
export interface ReplyChannel {
  readonly socket: Socket;
  /** The reply handed its last bytes to the socket. */
  replyFinished(reply: WireReply): void;
  /** The reply asked to cut the connection. */
  replyDestroyed(reply: WireReply): void;
  /**
   * Head lines for a reply after which the connection stays open: `connection: keep-alive` (an HTTP/1.0
   * client closes without it) and `keep-alive: timeout=N`, the hint node:http's agent and undici use to
   * retire an idle connection before the server's timer does, instead of sending on a closing socket.
   */
  readonly keepAliveLines: string;
}

/** Bytes a reply waiting behind an earlier one may buffer before write() asks its writer to pause. */
const PENDING_HIGH_WATER = 16 * 1024;
const LAST_CHUNK = '0\r\n\r\n';
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
/** Bodies up to this size are written in one string with the head (#send). */
const SMALL_BODY_BYTES = 4096;

type HeaderValue = string | number | readonly string[] | undefined;

function invalidHeader(code: string, message: string): TypeError {
  return Object.assign(new TypeError(message), { code });
}

/** The error for a reply head whose field block failed the check: names the first bad field, as node:http would. */
function invalidHeaderField(headers: Record<string, HeaderValue>): TypeError {
  const bad = firstBadField(headers);
  if (bad === undefined) return invalidHeader('ERR_INVALID_CHAR', 'Invalid header block');
  if (bad.part === 'name') return invalidHeader('ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${bad.name}"]`);
  return invalidHeader('ERR_INVALID_CHAR', `Invalid character in header content ["${bad.name}"]`);
}

/** The response to one request, written straight to the socket (no ServerResponse). */
export class WireReply extends EventEmitter {
  statusCode = 200;
  /**
   * Aborted (UPSTREAM_RESET) when the connection goes away before this reply finished, so the upstream
   * work stops too: what a 'close' listener would do, without a listener and a closure per request.
   */
  abortWhenAbandoned: { abort(reason?: unknown): void } | null = null;
  readonly #channel: ReplyChannel;
  readonly #headRequest: boolean;
  readonly #http10: boolean;
  /** False when the connection ends after this reply (client asked, drain, close-delimited body). */
  #keepAlive: boolean;
  /** True while this reply is the one writing to the socket (the oldest unanswered request). */
  #active = false;
  /** Header lines serialized by writeHead; null until then. */
  #lines: string | null = null;
  #hasLength = false;
  #userChunked = false;
  #userConnection = false;
  #headWritten = false;
  #chunked = false;
  #bodyAllowed = true;
  #ended = false;
  #finished = false;
  #destroyed = false;
  #closed = false;
  #needDrain = false;
  /** Output held while an earlier reply is still writing: latin1 strings (head, framing) and Buffers. */
  #pending: (string | Buffer)[] | null = null;
  #pendingBytes = 0;
  #bytesWritten = 0;

  constructor(channel: ReplyChannel, headRequest: boolean, http10: boolean, keepAlive: boolean) {
    super();
    this.#channel = channel;
    this.#headRequest = headRequest;
    this.#http10 = http10;
    this.#keepAlive = keepAlive;
  }

  get headersSent(): boolean {
    return this.#lines !== null;
  }

  get writableFinished(): boolean {
    return this.#finished;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Bytes this reply handed to the socket so far (status line, fields, framing, body): its own, even when requests are pipelined. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Whether the connection may carry another request after this reply. */
  get keepAlive(): boolean {
    return this.#keepAlive;
  }

  /** headers: lowercase names -> string | number | string[]. Throws (writing nothing) on a bad name or a value with CR/LF. */
  writeHead(statusCode: number, headers?: Record<string, HeaderValue>): this {
    this.#checkHeadAllowed(statusCode);
    let lines = '';
    let hasLength = false;
    let userChunked = false;
    let userConnection = false;
    let closes = false;
    let count = 0;
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      if (typeof value === 'object') {
        for (const v of value) lines += `${name}: ${v}\r\n`;
        count += value.length;
      } else {
        lines += `${name}: ${value}\r\n`;
        count++;
      }
      if (name === 'content-length') hasLength = true;
      else if (name === 'transfer-encoding') userChunked = true;
      else if (name === 'connection') {
        userConnection = true;
        closes = String(value).toLowerCase().includes('close');
      }
    }
    if (!isFieldBlock(lines, count)) throw invalidHeaderField(headers as Record<string, HeaderValue>);
    this.statusCode = statusCode;
    this.#lines = lines;
    this.#hasLength = hasLength;
    this.#userChunked = userChunked;
    this.#userConnection = userConnection;
    if (closes) this.#keepAlive = false;
    return this;
  }

  /**
   * The head of a relayed response: `fieldLines` are `name: value\r\n` lines of fields a strict parser
   * (llhttp, no lenient flags) accepted, plus lines of the caller's own constant text. They are not
   * checked again: llhttp admits no byte the check would refuse (test/unit/wire-field-trust.test.ts).
   * Hop-by-hop fields must already be gone: framing and Connection are this reply's own.
   */
  writeRelayedHead(statusCode: number, fieldLines: string, hasContentLength: boolean): this {
    this.#checkHeadAllowed(statusCode);
    this.statusCode = statusCode;
    this.#lines = fieldLines;
    this.#hasLength = hasContentLength;
    return this;
  }

  #checkHeadAllowed(statusCode: number): void {
    if (this.#lines !== null) throw invalidHeader('ERR_HTTP_HEADERS_SENT', 'Cannot write headers after they are sent to the client');
    if (!Number.isInteger(statusCode) || statusCode < 100 || statusCode > 999) throw Object.assign(new RangeError(`Invalid status code: ${statusCode}`), { code: 'ERR_HTTP_INVALID_STATUS_CODE' });
  }

  /** Writes body bytes; false = the socket's buffer is full and 'drain' follows. */
  write(chunk: Buffer | string): boolean {
    if (this.#destroyed) return false;
    if (this.#ended) throw Object.assign(new Error('write after end'), { code: 'ERR_STREAM_WRITE_AFTER_END' });
    if (this.#lines === null) this.writeHead(this.statusCode);
    const prefix = this.#headWritten ? '' : this.#startHead(-1);
    if (!this.#bodyAllowed || chunk.length === 0) {
      // An empty chunk must not be framed: in chunked encoding it would end the body.
      if (prefix !== '') this.#send(prefix, null, '');
      return !this.#needDrain;
    }
    if (!this.#chunked) return this.#send(prefix, chunk, '');
    const size = typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    return this.#send(`${prefix}${size.toString(16)}\r\n`, chunk, '\r\n');
  }

  /** Ends the response; a body given here with no content-length set and nothing written yet is sent with a content-length. */
  end(chunk?: Buffer | string): this {
    if (this.#ended || this.#destroyed) return this;
    if (this.#lines === null) this.writeHead(this.statusCode);
    this.#ended = true;
    const size = chunk === undefined ? 0 : typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    let prefix = this.#headWritten ? '' : this.#startHead(size);
    const body = this.#bodyAllowed && size > 0 ? (chunk as Buffer | string) : null;
    let suffix = '';
    if (this.#chunked) {
      if (body !== null) prefix += `${size.toString(16)}\r\n`;
      suffix = body !== null ? `\r\n${LAST_CHUNK}` : LAST_CHUNK;
    }
    if (prefix !== '' || body !== null || suffix !== '') this.#send(prefix, body, suffix);
    if (this.#active) this.#finish();
    return this;
  }

  /** Cuts the connection (a response under way cannot be followed by an error response). */
  destroy(_err?: Error): this {
    if (this.#destroyed || this.#finished) return this;
    this.#destroyed = true;
    this.#pending = null;
    this.#channel.replyDestroyed(this);
    return this;
  }

  /** Sends the interim `100 Continue` (in order, like any output of this reply). */
  sendContinue(): void {
    this.#send(CONTINUE, null, '');
  }

  /** Drain: a head not yet written carries `connection: close`. */
  closeConnectionAfter(): void {
    if (!this.#headWritten) this.#keepAlive = false;
  }

  /** Makes this reply the one writing to the socket: flushes what it buffered, finishing if it already ended. */
  activate(): void {
    this.#active = true;
    const pending = this.#pending;
    if (pending !== null) {
      this.#pending = null;
      this.#pendingBytes = 0;
      const socket = this.#channel.socket;
      let ok = true;
      socket.cork();
      for (const part of pending) {
        ok = typeof part === 'string' ? socket.write(part, 'latin1') : socket.write(part);
        this.#bytesWritten += part.length; // latin1: a byte per character
      }
      socket.uncork();
      if (!ok) this.#needDrain = true;
      else this.socketDrained();
    }
    if (this.#ended) this.#finish();
  }

  /** The socket wants more: tell a writer that was told to wait. */
  socketDrained(): void {
    if (!this.#needDrain) return;
    this.#needDrain = false;
    this.emit('drain');
  }

  /** The connection is gone before this reply finished: 'close' with writableFinished false. */
  abandon(): void {
    if (this.#finished) return;
    this.#destroyed = true;
    this.#pending = null;
    const controller = this.abortWhenAbandoned;
    if (controller !== null) {
      this.abortWhenAbandoned = null;
      controller.abort(meshError('UPSTREAM_RESET', 'client closed the connection'));
    }
    this.#emitClose();
  }

  /** Builds the status line, header lines and the framing fields; `knownLength` is the whole body's size when end() carries it, else -1. */
  #startHead(knownLength: number): string {
    this.#headWritten = true;
    const status = this.statusCode;
    this.#bodyAllowed = !this.#headRequest && status >= 200 && status !== 204 && status !== 304;
    let framing = '';
    if (this.#hasLength) {
      // Sent as given.
    } else if (this.#userChunked) this.#chunked = this.#bodyAllowed;
    else if (!this.#bodyAllowed) {
      // No body may follow, so no framing either.
    } else if (knownLength >= 0) framing = `content-length: ${knownLength}\r\n`;
    else if (!this.#http10) {
      framing = 'transfer-encoding: chunked\r\n';
      this.#chunked = true;
    } else this.#keepAlive = false; // HTTP/1.0 without a length: the body ends when the connection does.
    if (!this.#userConnection) framing += this.#keepAlive ? this.#channel.keepAliveLines : 'connection: close\r\n';
    return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n${this.#lines ?? ''}${framing}\r\n`;
  }

  /** Writes prefix (latin1), body and suffix (latin1) in one go, or holds them while an earlier reply writes. */
  #send(prefix: string, body: Buffer | string | null, suffix: string): boolean {
    if (!this.#active) return this.#hold(prefix, body, suffix);
    const socket = this.#channel.socket;
    let ok: boolean;
    this.#bytesWritten += prefix.length + suffix.length + (body === null || typeof body === 'string' ? 0 : body.length);
    if (body === null) ok = socket.write(prefix + suffix, 'latin1');
    // Node concatenates head and a string body the same way (the body's utf8 wins).
    else if (typeof body === 'string') {
      const whole = prefix + body + suffix;
      // The whole string leaves as utf8: counted again as such.
      this.#bytesWritten += Buffer.byteLength(whole) - prefix.length - suffix.length;
      ok = socket.write(whole);
    } else if (prefix === '' && suffix === '') ok = socket.write(body);
    // A small body leaves inside the head's string: one write instead of cork + writev, whose JavaScript
    // (buffered requests, the chunk array, mixed encodings) costs more than copying a few KiB. Latin1
    // maps every byte to one character and back, so the body's bytes are unchanged.
    else if (body.length <= SMALL_BODY_BYTES) ok = socket.write(prefix + body.toString('latin1') + suffix, 'latin1');
    else {
      socket.cork();
      if (prefix !== '') socket.write(prefix, 'latin1');
      ok = socket.write(body);
      if (suffix !== '') ok = socket.write(suffix, 'latin1');
      socket.uncork();
    }
    // write() answers false for any chunk above the socket's high-water mark (16 KiB), even when the
    // kernel took every byte at once. Waiting for 'drain' then would pause and resume the upstream
    // socket for every chunk of a large body: only bytes still queued in the socket are worth a wait.
    if (!ok && socket.writableLength === 0 && !socket.destroyed) ok = true;
    if (!ok) this.#needDrain = true;
    return ok;
  }

  #hold(prefix: string, body: Buffer | string | null, suffix: string): boolean {
    if (this.#destroyed) return false;
    const pending = (this.#pending ??= []);
    if (prefix !== '') pending.push(prefix);
    if (body !== null) pending.push(typeof body === 'string' ? Buffer.from(body) : body);
    if (suffix !== '') pending.push(suffix);
    this.#pendingBytes += prefix.length + (body === null ? 0 : body.length) + suffix.length;
    if (this.#pendingBytes > PENDING_HIGH_WATER) this.#needDrain = true;
    return !this.#needDrain;
  }

  #finish(): void {
    this.#finished = true;
    this.#channel.replyFinished(this);
    // 'finish' and 'close' come on the next tick, as node:http emits them; nobody listening, no tick.
    if (this.listenerCount('finish') > 0 || this.listenerCount('close') > 0) process.nextTick(WireReply.#afterFinish, this);
    else this.#closed = true;
  }

  static #afterFinish(this: void, reply: WireReply): void {
    reply.emit('finish');
    reply.#emitClose();
  }

  #emitClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close');
  }
}
