/**
 * The retry layer. States of one request: buffer the body (when it can be resent) -> attempt -> on a
 * retryable failure, check attempts left, time left, concurrent retries and the budget -> back off with
 * jitter -> attempt again (the innermost forward avoids the endpoint just tried). Also enforces the
 * per-try timeout (abort the attempt, then retry) and the request timeout across all tries.
 *
 * What is retryable: a connect failure for any method (no byte was sent); for idempotent methods also
 * resets, timeouts and the configured statuses. A response being retried has its body drained.
 */
import { Buffer } from 'node:buffer';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMeshError, meshError, MeshletError } from '../errors.ts';
import { abortWatchOf, callForward, exchangeWithSignal, type Forward, type ProxyExchange, type UpstreamResponse } from '../protocols/exchange.ts';
import { STREAMING_BODY_NOTE } from '../protocols/http2.ts';
import { WireBody } from '../protocols/wire/response-body.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import { backoffDelay } from './backoff.ts';
import type { ConcurrencyLimits } from './circuit-breaker.ts';
import type { RetryConfig } from './retry-config.ts';
import type { RetryBudget } from './retry-budget.ts';

/** Methods RFC 9110 defines as idempotent: repeating them has the effect of sending them once. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** Bytes of a discarded response body read to keep its connection; past this it is cut. */
const DRAIN_LIMIT_BYTES = 64 * 1024;

export interface RetryDeps {
  readonly upstream: string;
  readonly events: MeshEvents;
  readonly budget: RetryBudget;
  /** Concurrent-retry limit from the circuit breaker, when enabled. */
  readonly limits?: ConcurrencyLimits | undefined;
  /** Request timeout across all attempts (until response headers); 0 disables. */
  readonly requestTimeoutMs: number;
  readonly random?: () => number;
}

/** What an attempt already made ended with. */
type AttemptOutcome = { readonly response: UpstreamResponse } | { readonly err: unknown };

/** Builds the retry layer around `next` (which makes one attempt). */
export function createRetry(conf: RetryConfig, next: Forward, deps: RetryDeps): Forward {
  const statuses = new Set(conf.statuses);
  const { upstream, events, budget, limits, requestTimeoutMs } = deps;
  const random = deps.random ?? Math.random;

  return function retrying(x: ProxyExchange): Promise<UpstreamResponse> {
    budget.deposit();
    const idempotent = IDEMPOTENT.has(x.method);
    // A live stream body (HTTP/2, gRPC streaming calls) is never buffered: the client may wait for
    // responses before it ends. Only a connect failure retries it, since the body is untouched until
    // the upstream session is up (protocols/h2-forward.ts).
    const streaming = x.body !== null && !Buffer.isBuffer(x.body) && x.notes.get(STREAMING_BODY_NOTE) === true;
    const deadline = requestTimeoutMs > 0 ? x.startedAt + requestTimeoutMs : Infinity;
    if (!streaming && x.body !== null && !Buffer.isBuffer(x.body)) return bufferThenAttempt(x, idempotent, deadline);
    // Most requests have no body: the first attempt is a promise chain (no async frame, no buffering),
    // and the loop below only runs when that attempt's outcome asks for a retry.
    const resendable = !streaming;
    return attemptOnce(x, next, conf.perTryTimeout, deadline, 1).then(
      (response) => (statuses.has(response.statusCode) && idempotent ? attemptsAfter(x, idempotent, streaming, resendable, deadline, { response }) : response),
      (err: unknown) => attemptsAfter(x, idempotent, streaming, resendable, deadline, { err }),
    );
  };

  async function bufferThenAttempt(x: ProxyExchange, idempotent: boolean, deadline: number): Promise<UpstreamResponse> {
    const resendable = await bufferBody(x, conf.maxBodyBytes);
    return attemptsAfter(x, idempotent, false, resendable, deadline, undefined);
  }

  /**
   * The attempts loop. `first` is the outcome of attempt 1 when it was already made; the loop then
   * starts by judging it, exactly as it judges the attempts it makes itself.
   */
  async function attemptsAfter(x: ProxyExchange, idempotent: boolean, streaming: boolean, resendable: boolean, deadline: number, first: AttemptOutcome | undefined): Promise<UpstreamResponse> {
    let made = first;
    for (let attempt = 1; ; attempt++) {
      // A retry holds one of the breaker's concurrent-retry slots until its response headers arrive.
      const holdsRetrySlot = attempt > 1 && limits !== undefined;
      let reason: string;
      let delay = 0;
      try {
        let response: UpstreamResponse;
        if (made !== undefined) {
          const outcome = made;
          made = undefined;
          if ('err' in outcome) throw outcome.err;
          response = outcome.response;
        } else {
          const attempting = attemptOnce(x, next, conf.perTryTimeout, deadline, attempt);
          response = await (holdsRetrySlot ? attempting.finally(() => limits.releaseRetry()) : attempting);
        }
        if (!statuses.has(response.statusCode) || !idempotent) return response;
        delay = backoffDelay(attempt, conf.backoffBase, random);
        reason = `status_${response.statusCode}`;
        if (!mayRetry(attempt, resendable, deadline - delay, reason)) return response;
        drain(response);
      } catch (err) {
        if (abortWatchOf(x).aborted || !(err instanceof MeshletError)) throw err;
        const connectFailure = isMeshError(err, 'UPSTREAM_CONNECT');
        const retryable = connectFailure || (idempotent && conf.onReset && (isMeshError(err, 'UPSTREAM_RESET') || isMeshError(err, 'UPSTREAM_TIMEOUT')));
        if (!retryable) throw err;
        reason = err.reason;
        delay = backoffDelay(attempt, conf.backoffBase, random);
        if (!mayRetry(attempt, resendable || (streaming && connectFailure), deadline - delay, reason)) throw err;
      }
      try {
        await sleep(delay, undefined, { signal: x.signal });
      } catch (err) {
        limits?.releaseRetry();
        throw err;
      }
    }
  }

  /**
   * Whether another attempt may start (`startBy`: the deadline less the backoff, so a retry never starts
   * with no time left); takes a concurrent-retry slot and budget when it may.
   */
  function mayRetry(attempt: number, resendable: boolean, startBy: number, reason: string): boolean {
    if (attempt >= conf.maxAttempts || !resendable || performance.now() >= startBy) return false;
    // Like Envoy's retry_overflow, a retry skipped for the concurrent-retry cap counts with the budget's.
    if (limits && !limits.tryAcquireRetry()) {
      events.emit('retryBudgetExhausted', { upstream });
      return false;
    }
    if (!budget.tryWithdraw()) {
      limits?.releaseRetry();
      events.emit('retryBudgetExhausted', { upstream });
      return false;
    }
    events.emit('retry', { upstream, attempt: attempt + 1, reason });
    return true;
  }
}

/**
 * One attempt with its own abort signal: aborted by the client, by the per-try timeout, or by the
 * request deadline. The attempt sees a shallow copy of the exchange carrying that signal.
 */
function attemptOnce(x: ProxyExchange, next: Forward, perTryMs: number, deadline: number, attempt: number): Promise<UpstreamResponse> {
  // The innermost forward already enforces the request timeout from its start, which for a first
  // attempt is the deadline: skip the signal plumbing (and an async frame) on the common path.
  const remaining = attempt === 1 && perTryMs === 0 ? Infinity : deadline - performance.now();
  const limitMs = perTryMs > 0 ? Math.min(perTryMs, remaining) : remaining;
  return Number.isFinite(limitMs) ? attemptWithDeadline(x, next, perTryMs, limitMs, attempt) : callForward(next, x);
}

async function attemptWithDeadline(x: ProxyExchange, next: Forward, perTryMs: number, limitMs: number, attempt: number): Promise<UpstreamResponse> {
  const controller = new AbortController();
  const timer = setTimeout(() => {
    const what = limitMs === perTryMs ? `per-try timeout of ${perTryMs} ms` : 'request timeout';
    controller.abort(meshError('UPSTREAM_TIMEOUT', `attempt ${attempt} to upstream "${x.cluster.name}" hit the ${what}`));
  }, Math.max(0, limitMs));
  const copy = exchangeWithSignal(x, AbortSignal.any([x.signal, controller.signal]));
  try {
    return await next(copy);
  } finally {
    clearTimeout(timer);
    x.attempts = copy.attempts;
  }
}

/**
 * Buffers a request body up to `limit` bytes into `x.body` so it can be resent; resolves whether the
 * request can be retried. A larger body keeps streaming, what was read replayed first. The client
 * stream is read with events rather than an async iterator, which would destroy the request (and
 * detach its socket) at the end.
 */
async function bufferBody(x: ProxyExchange, limit: number): Promise<boolean> {
  const body = x.body;
  if (body === null || Buffer.isBuffer(body)) return true;
  const declared = Number(x.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return false;
  const chunks: Buffer[] = [];
  let size = 0;
  const complete = await new Promise<boolean>((resolve, reject) => {
    const cleanup = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size <= limit) return;
      body.pause();
      cleanup();
      resolve(false);
    };
    const onEnd = () => {
      cleanup();
      resolve(true);
    };
    const onError = (err: Error) => {
      cleanup();
      reject(meshError('BAD_REQUEST', `request body from the client failed: ${err.message}`, err));
    };
    const onClose = () => onError(new Error('client closed the connection before the body ended'));
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    body.once('close', onClose);
  });
  if (complete) {
    x.body = Buffer.concat(chunks, size);
    return true;
  }
  const replay = new PassThrough();
  // The client failing mid-body fails the replay too; the attempt reading it may have ended already
  // (aborted, or never sent), and an 'error' nobody listens for would end the process.
  replay.on('error', ignoreReplayError);
  for (const chunk of chunks) replay.write(chunk);
  body.on('error', (err) => replay.destroy(err));
  body.pipe(replay);
  x.body = replay;
  return false;
}

/** The exchange's own abort (the client left) reports a failed body; the replay stream has nothing to add. */
function ignoreReplayError(): void {}

/** Reads and discards a response we retry, so its connection can be reused; a long body is cut. */
function drain(response: UpstreamResponse): void {
  const body = response.body;
  let read = 0;
  const count = (chunk: Buffer) => {
    read += chunk.length;
    if (read > DRAIN_LIMIT_BYTES) body.destroy();
  };
  if (body instanceof WireBody) {
    // A pooled HTTP/1.1 body has no 'data' events: it must be consumed, or its connection stays busy.
    body.pipeTo({ write: (chunk) => (count(chunk), true), end: () => undefined, once: () => undefined }).catch(() => {});
    return;
  }
  body.on('error', () => {});
  body.on('data', count);
}
