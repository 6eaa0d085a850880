/**
 * Per-attempt bookkeeping that needs no promise of its own (the breaker's slot, outlier detection, the
 * latency feed). As layers, each added a promise and a reaction to every attempt (~0.8k instructions
 * each); watches next to each other in a chain share one: `watchAttempts` starts them in order, makes
 * the attempt, and reports its outcome to them innermost first, as nested layers' reactions ran.
 */
import { performance } from 'node:perf_hooks';
import { callForward, composeLayers, type Forward, type ForwardLayer, type ProxyExchange, type UpstreamResponse } from './exchange.ts';

/** What every watch of one attempt may read: taken once, right before the attempt is made. */
export interface AttemptFacts {
  /** performance.now() when the attempt was made (after every watch's start). */
  readonly startedAt: number;
  /** `x.tried.length` before it: the attempt reached an endpoint if it grew. */
  readonly triedBefore: number;
}

export interface AttemptWatch {
  /**
   * Before the attempt. Throwing (or a rejected promise) refuses it: the watches started before this
   * one see a failure, the others nothing. A promise is waited for first (a queue for a slot).
   */
  start?(x: ProxyExchange): Promise<void> | undefined;
  /** The attempt's response head arrived. Throwing fails the attempt for the watches outside this one. */
  response(x: ProxyExchange, response: UpstreamResponse, attempt: AttemptFacts): void;
  /** The attempt failed (or a watch inside this one threw). */
  failure(x: ProxyExchange, err: unknown, attempt: AttemptFacts | undefined): void;
}

/** A link of a chain: a layer (its own promise) or a watch. */
export type ChainLink = ForwardLayer | AttemptWatch;

function isWatch(link: ChainLink): link is AttemptWatch {
  return typeof link !== 'function';
}

/** Composes links outermost first, each run of adjacent watches as one layer. */
export function composeChain(links: readonly ChainLink[], innermost: Forward): Forward {
  const layers: ForwardLayer[] = [];
  let run: AttemptWatch[] = [];
  const flush = () => {
    if (run.length === 0) return;
    const watches = run;
    layers.push((next) => watchAttempts(watches, next));
    run = [];
  };
  for (const link of links) {
    if (isWatch(link)) run.push(link);
    else {
      flush();
      layers.push(link);
    }
  }
  flush();
  return composeLayers(layers, innermost);
}

/** `watches` (outermost first) around `next`, with one promise reaction per attempt for all of them. */
export function watchAttempts(watches: readonly AttemptWatch[], next: Forward): Forward {
  const count = watches.length;

  /** Tells the watches from `from` outward (down to index 0) that the attempt failed. */
  function failOutward(from: number, x: ProxyExchange, err: unknown, attempt: AttemptFacts | undefined): void {
    for (let i = from; i >= 0; i--) watches[i]!.failure(x, err, attempt);
  }

  function startFrom(first: number, x: ProxyExchange): Promise<UpstreamResponse> {
    for (let i = first; i < count; i++) {
      const watch = watches[i]!;
      if (watch.start === undefined) continue;
      let waiting: Promise<void> | undefined;
      try {
        waiting = watch.start(x);
      } catch (err) {
        failOutward(i - 1, x, err, undefined);
        return Promise.reject(err as Error);
      }
      if (waiting !== undefined) {
        return waiting.then(
          () => startFrom(i + 1, x),
          (err: unknown) => {
            failOutward(i - 1, x, err, undefined);
            throw err;
          },
        );
      }
    }
    const attempt: AttemptFacts = { startedAt: performance.now(), triedBefore: x.tried.length };
    return callForward(next, x).then(
      (response) => {
        let i = count - 1;
        try {
          for (; i >= 0; i--) watches[i]!.response(x, response, attempt);
        } catch (err) {
          failOutward(i - 1, x, err, attempt);
          throw err;
        }
        return response;
      },
      (err: unknown) => {
        failOutward(count - 1, x, err, attempt);
        throw err;
      },
    );
  }

  return function watched(x: ProxyExchange): Promise<UpstreamResponse> {
    return startFrom(0, x);
  };
}
