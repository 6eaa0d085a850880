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
 * Streams `src` into `dst` with backpressure and resolves once `dst` finished, like
 * `stream/promises.pipeline(src, dst)` for the two-stream case, without pipeline's per-call
 * AbortController (whose abort() builds a DOMException with a stack trace on every response) and
 * end-of-stream bookkeeping, which showed up as several percent of the proxy's CPU profile.
 *
 * Failure semantics match pipeline: a source error or an early close of either side destroys both
 * streams and rejects (with the source's error, or ERR_STREAM_PREMATURE_CLOSE).
 */
export function pump(src: Readable, dst: PumpTarget): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const cleanup = () => {
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', onError);
      src.off('close', onSrcClose);
      dst.off('drain', onDrain);
      dst.off('finish', onFinish);
      dst.off('error', onError);
      dst.off('close', onDstClose);
    };
    function fail(err: Error): void {
      if (settled) return;
      settled = true;
      cleanup();
      // Late errors from the destroyed streams were already reported through the rejection.
      src.on('error', ignore);
      dst.on('error', ignore);
      if (!src.destroyed) src.destroy();
      if (!dst.destroyed) dst.destroy(err);
      reject(err);
    }
    function onData(chunk: Buffer): void {
      if (!dst.write(chunk)) src.pause();
    }
    function onDrain(): void {
      src.resume();
    }
    function onEnd(): void {
      dst.end();
    }
    function onFinish(): void {
      if (settled) return;
      settled = true;
      cleanup();
      resolve();
    }
    function onError(err: Error): void {
      fail(err);
    }
    function onSrcClose(): void {
      if (!src.readableEnded) fail(src.errored ?? prematureClose());
    }
    function onDstClose(): void {
      if (!dst.writableFinished) fail(dst.errored ?? prematureClose());
    }

    if (src.errored) return fail(src.errored);
    if (dst.errored) return fail(dst.errored);
    if (dst.destroyed || dst.writableEnded) return fail(prematureClose());
    if (src.destroyed && !src.readableEnded) return fail(prematureClose());
    src.on('error', onError);
    src.on('close', onSrcClose);
    src.on('end', onEnd);
    dst.on('drain', onDrain);
    dst.on('finish', onFinish);
    dst.on('error', onError);
    dst.on('close', onDstClose);
    if (src.readableEnded) dst.end();
    else src.on('data', onData);
  });
}

/** Streams an upstream response body to `dst`: straight off a pooled HTTP/1.1 connection, or from a stream (HTTP/2). */
export function streamBody(body: Readable | WireBody, dst: PumpTarget & BodySink): Promise<void> {
  return body instanceof WireBody ? body.pipeTo(dst) : pump(body, dst);
}
