import { Buffer } from 'node:buffer';
import type { Readable } from 'node:stream';
import { WireBody, type BodySink } from './wire/response-body.ts';

/** What pump writes into: a Writable, or anything with its write/end/destroy and events (Meshlet's WireReply). */
export interface PumpTarget {
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(err?: Error): unknown;
  readonly destroyed: boolean;
  readonly writableFinished: boolean;
  readonly writableEnded?: boolean;
  readonly errored?: Error | null;
  // `any`, as in EventEmitter's own listener type: each event passes different arguments.
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
}

/** The error `stream.pipeline` reports when the destination closes before the body was written. */
function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

function ignore(): void {}

/**
 * Where the listeners find their pump: module functions called with the emitting stream as `this`,
 * instead of eight closures per response. A stream is the source of one pump and the destination of
 * another at most, hence two slots.
 */
const kAsSource = Symbol('meshlet.pumpSource');
const kAsTarget = Symbol('meshlet.pumpTarget');
type Source = Readable & { [kAsSource]: Pump | undefined };
type Target = PumpTarget & { [kAsTarget]: Pump | undefined };

/** One src -> dst copy in progress: settles once, on dst's 'finish' or on the first failure. */
class Pump {
  readonly src: Source;
  readonly dst: Target;
  #settled = false;
  readonly #resolve: () => void;
  readonly #reject: (err: Error) => void;

  constructor(src: Readable, dst: PumpTarget, resolve: () => void, reject: (err: Error) => void) {
    this.src = src as Source;
    this.dst = dst as Target;
    this.src[kAsSource] = this;
    this.dst[kAsTarget] = this;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  start(): void {
    const { src, dst } = this;
    if (src.errored) return this.fail(src.errored);
    if (dst.errored) return this.fail(dst.errored);
    if (dst.destroyed || dst.writableEnded) return this.fail(prematureClose());
    if (src.destroyed && !src.readableEnded) return this.fail(prematureClose());
    listeners(src, dst, 'on');
    if (src.readableEnded) dst.end();
    else src.on('data', onSourceData);
  }

  finish(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#cleanup();
    this.#resolve();
  }

  fail(err: Error): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#cleanup();
    const { src, dst } = this;
    // Late errors from the destroyed streams were already reported through the rejection.
    src.on('error', ignore);
    dst.on('error', ignore);
    if (!src.destroyed) src.destroy();
    if (!dst.destroyed) dst.destroy(err);
    this.#reject(err);
  }

  /**
   * Removes the listeners and the streams' slots: a settled pump must not be reachable from either
   * stream. node:http2 keeps a finished stream alive through scavenges until a full GC, and through a
   * slot it would keep the pump and the other side's stream (with everything they hold) as long.
   */
  #cleanup(): void {
    const { src, dst } = this;
    src.off('data', onSourceData);
    listeners(src, dst, 'off');
    if (src[kAsSource] === this) src[kAsSource] = undefined;
    if (dst[kAsTarget] === this) dst[kAsTarget] = undefined;
  }
}

// The listeners run only while their pump is running (#cleanup removes them with the slots), so the
// slot is set whenever one of them is called; `?.` keeps a stray late call harmless all the same.

function onSourceData(this: Source, chunk: Buffer): void {
  const pump = this[kAsSource];
  if (pump !== undefined && !pump.dst.write(chunk)) this.pause();
}

function onTargetDrain(this: Target): void {
  this[kAsTarget]?.src.resume();
}

function onSourceEnd(this: Source): void {
  this[kAsSource]?.dst.end();
}

function onTargetFinish(this: Target): void {
  this[kAsTarget]?.finish();
}

function onSourceError(this: Source, err: Error): void {
  this[kAsSource]?.fail(err);
}

function onTargetError(this: Target, err: Error): void {
  this[kAsTarget]?.fail(err);
}

function onSourceClose(this: Source): void {
  if (!this.readableEnded) this[kAsSource]?.fail(this.errored ?? prematureClose());
}

function onTargetClose(this: Target): void {
  if (!this.writableFinished) this[kAsTarget]?.fail(this.errored ?? prematureClose());
}

/**
 * What a pump listens to on each side while it runs ('data' on the source too, once it flows), added
 * and removed by the same list. Direct calls, not a table walked with for-of: that allocated per pump.
 */
function listeners(src: Source, dst: Target, method: 'on' | 'off'): void {
  src[method]('error', onSourceError);
  src[method]('close', onSourceClose);
  src[method]('end', onSourceEnd);
  dst[method]('drain', onTargetDrain);
  dst[method]('finish', onTargetFinish);
  dst[method]('error', onTargetError);
  dst[method]('close', onTargetClose);
}

/**
 * Streams `src` into `dst` with backpressure and resolves once `dst` finished, like
 * `stream/promises.pipeline(src, dst)` for the two-stream case, without pipeline's per-call
 * AbortController (whose abort() builds a DOMException with a stack trace on every response) and
 * end-of-stream bookkeeping, which showed up as several percent of the proxy's CPU profile.
 *
 * Failure semantics match pipeline: a source error or an early close of either side destroys both
 * streams and rejects (with the source's error, or ERR_STREAM_PREMATURE_CLOSE).
 */
export function pump(src: Readable, dst: PumpTarget): Promise<void> {
  return new Promise<void>((resolve, reject) => new Pump(src, dst, resolve, reject).start());
}

/** Streams an upstream response body to `dst`: straight off a pooled HTTP/1.1 connection, or from a stream (HTTP/2). */
export function streamBody(body: Readable | WireBody, dst: PumpTarget & BodySink): Promise<void> {
  return body instanceof WireBody ? body.pipeTo(dst) : pump(body, dst);
}
