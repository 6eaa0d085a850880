/**
 * The body of a response read off a pooled upstream connection. It replaces a Readable per response:
 * the connection pushes parsed chunks in, and one consumer either pipes them into a sink (pipeTo) or
 * discards them (resume). Bytes that arrive before anyone consumes are kept, and the connection stops
 * reading the socket until someone does, so memory stays bounded by one socket read.
 */
import { Buffer } from 'node:buffer';
/** Where pipeTo writes: a socket, a node:http ServerResponse, an HTTP/2 stream, or Meshlet's raw reply. */
export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

/** What a body needs from the connection it is read from; detached once the upstream message is complete. */
export interface BodySource {
  /** The consumer is not ready: stop reading the upstream socket. */
  pauseReading(): void;
  /** The consumer is ready again. */
  resumeReading(): void;
  /** The consumer gave up before the message was complete: the connection cannot be reused. */
  abandon(err: Error): void;
}

/** Bytes kept for a body nobody consumes yet before the connection stops reading the socket. */
const UNCONSUMED_LIMIT_BYTES = 64 * 1024;

function destroyedError(): Error {
  return Object.assign(new Error('response body destroyed before it was read to the end'), { code: 'UND_ERR_ABORTED' });
}

/** A response body read straight off the pooled connection, without a Readable per response. */
export class WireBody {
  #source: BodySource | null;
  /** Chunks received while nobody consumed or the sink asked to wait. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #sink: BodySink | null = null;
  #discarding = false;
  #waitingForDrain = false;
  #drainListener: (() => void) | null = null;
  /** Every byte of the upstream message arrived (the consumer may not have taken them yet). */
  #upstreamDone = false;
  #closed = false;
  #error: Error | null = null;
  #trailers: Record<string, string> | undefined;
  #resolve: (() => void) | null = null;
  #reject: ((err: Error) => void) | null = null;
  /** Callbacks for the end of the body (onClose): a slot per layer that cares, without an EventEmitter listener each. */
  #onClose: Array<() => void> | null = null;

  constructor(source: BodySource) {
    this.#source = source;
  }

  /** True once the body ended, failed or was destroyed. */
  get destroyed(): boolean {
    return this.#closed;
  }

  /** Trailers of a chunked response (lowercase names), set when the body ended. */
  get trailers(): Record<string, string> | undefined {
    return this.#trailers;
  }

  /**
   * Streams the body into dst with backpressure, writing chunks that arrived earlier first; calls
   * dst.end() after the last byte and then resolves. Rejects (without ending dst) on upstream error,
   * body idle timeout, abort or destroy. Once per body.
   */
  pipeTo(dst: BodySink): Promise<void> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.#sink || this.#discarding || this.#closed) return Promise.reject(new Error('response body was already consumed'));
    return new Promise<void>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
      this.#sink = dst;
      this.#flush();
    });
  }

  /**
   * Calls `callback` once, when the body ended, failed or was destroyed (right away if it already
   * has). The only way to hear of the end: a WireBody is not an EventEmitter, whose construction (a
   * null-prototype listener map, two megamorphic symbol stores) cost ~0.4k instructions per response
   * for an event nobody on the request path listened to (docs/performance.md, ninth session).
   */
  onClose(callback: () => void): void {
    if (this.#closed) {
      callback();
      return;
    }
    if (this.#onClose === null) this.#onClose = [callback];
    else this.#onClose.push(callback);
  }

  /** Discards the rest of the body (the connection is reused if it then completes cleanly). */
  resume(): this {
    if (this.#closed || this.#sink) return this;
    this.#discarding = true;
    this.#pending = [];
    this.#pendingBytes = 0;
    if (this.#upstreamDone) this.#close();
    else this.#source?.resumeReading();
    return this;
  }

  /** Stops reading: the connection is destroyed, never reused (unless the message had already arrived whole). */
  destroy(err?: Error): this {
    if (this.#closed) return this;
    const reason = err ?? destroyedError();
    const source = this.#source;
    this.#source = null;
    this.#pending = [];
    this.#pendingBytes = 0;
    if (!this.#upstreamDone) source?.abandon(reason);
    this.#settleWithError(reason);
    return this;
  }

  /** Called by the connection with each de-chunked body chunk. */
  push(chunk: Buffer): void {
    if (this.#closed || this.#discarding) return;
    if (this.#sink && !this.#waitingForDrain && this.#pending.length === 0) {
      if (!this.#write(chunk)) this.#waitForDrain();
      return;
    }
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    // Before anyone consumes (the response head is still on its way through the layers), a small body
    // is simply kept: pausing and resuming the socket for it cost a stop, a start and a tick per request.
    if (this.#sink || this.#pendingBytes >= UNCONSUMED_LIMIT_BYTES) this.#source?.pauseReading();
  }

  /** Called by the connection when the upstream message is complete; the connection may be reused from now on. */
  complete(trailers: Record<string, string> | undefined): void {
    if (this.#closed) return;
    this.#upstreamDone = true;
    this.#trailers = trailers;
    this.#source = null;
    if (this.#discarding) this.#close();
    else if (this.#sink && !this.#waitingForDrain && this.#pending.length === 0) this.#endSink();
  }

  /** Called by the connection when the upstream failed (reset, parse error, idle timeout, abort). */
  fail(err: Error): void {
    if (this.#closed) return;
    this.#source = null;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#settleWithError(err);
  }

  /** Writes what is pending; then ends the sink if the message is complete, or asks for more bytes. */
  #flush(): void {
    const sink = this.#sink;
    if (!sink || this.#closed) return;
    while (this.#pending.length > 0) {
      const chunk = this.#pending.shift() as Buffer;
      this.#pendingBytes -= chunk.length;
      if (!this.#write(chunk)) {
        if (!this.#closed) this.#waitForDrain();
        return;
      }
    }
    if (this.#upstreamDone) this.#endSink();
    else this.#source?.resumeReading();
  }

  /** dst.write, turning a throwing sink into a destroyed body rather than an exception inside the parser. */
  #write(chunk: Buffer): boolean {
    try {
      return (this.#sink as BodySink).write(chunk);
    } catch (err) {
      this.destroy(err as Error);
      return false;
    }
  }

  #waitForDrain(): void {
    this.#waitingForDrain = true;
    this.#source?.pauseReading();
    // One listener function per body, made only when a sink actually pushes back.
    this.#drainListener ??= () => {
      this.#waitingForDrain = false;
      this.#flush();
    };
    (this.#sink as BodySink).once('drain', this.#drainListener);
  }

  #endSink(): void {
    const resolve = this.#resolve;
    try {
      (this.#sink as BodySink).end();
    } catch (err) {
      this.#settleWithError(err as Error);
      return;
    }
    this.#resolve = this.#reject = null;
    this.#close();
    resolve?.();
  }

  #settleWithError(err: Error): void {
    this.#error = err;
    const reject = this.#reject;
    this.#resolve = this.#reject = null;
    this.#close();
    reject?.(err);
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const callbacks = this.#onClose;
    this.#onClose = null;
    if (callbacks !== null) for (let i = 0; i < callbacks.length; i++) callbacks[i]!();
  }
}
