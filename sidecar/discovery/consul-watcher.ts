/**
 * One blocking-query loop on one service, following Consul's rules for clients of blocking queries
 * (api-docs/features/blocking): reset the index to 0 when it goes backwards, never block on an index
 * below 1, rate-limit the loop so immediate answers cannot spin it, and back off (capped, jittered)
 * while Consul fails. The first query after a failure is non-blocking: a blocking one on an unchanged
 * index would be held for the whole `wait`, hiding for that long that Consul is back.
 */
import { ExponentialBackoff, TokenBucket } from './consul-backoff.ts';
import type { HealthQueryResult } from './consul-client.ts';

/** Runs one health query; `index` 0 means "answer now", above 0 "block until past this index". */
export type HealthQuery = (index: bigint, signal: AbortSignal) => Promise<HealthQueryResult>;

/**
 * The index to send next, given the one sent and the one Consul returned: backwards means Consul's
 * state was restored or rebuilt, so start over with a non-blocking read; otherwise at least 1.
 */
export function nextIndex(sent: bigint, returned: bigint): bigint {
  if (returned < sent) return 0n;
  return returned < 1n ? 1n : returned;
}

export interface ServiceWatcherOptions {
  readonly service: string;
  readonly query: HealthQuery;
  readonly backoff: ExponentialBackoff;
  readonly bucket: TokenBucket;
  /** Every successful answer (also unchanged ones: the caller drops what did not change). */
  readonly onResult: (result: HealthQueryResult) => void;
  /** Every failed attempt, with the delay before the next one. */
  readonly onError: (err: unknown, retryInMs: number) => void;
}

export class MissingIndexError extends Error {
  constructor(service: string) {
    super(`Consul answered the health query for "${service}" without a valid X-Consul-Index header`);
    this.name = 'MissingIndexError';
  }
}

/** Watches one service until `stop()`. */
export class ServiceWatcher {
  readonly service: string;
  readonly #options: ServiceWatcherOptions;
  readonly #abort = new AbortController();
  #index = 0n;
  #failed = false;
  #running: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(options: ServiceWatcherOptions) {
    this.service = options.service;
    this.#options = options;
  }

  /** The index the next query will send. */
  get index(): bigint {
    return this.#index;
  }

  start(): void {
    this.#running ??= this.#loop();
  }

  /** Cancels the query in flight and any pending delay; resolves when the loop has exited. */
  async stop(): Promise<void> {
    this.#abort.abort();
    this.#wake?.();
    await this.#running;
  }

  get #stopped(): boolean {
    return this.#abort.signal.aborted;
  }

  async #loop(): Promise<void> {
    const { query, backoff, bucket, onResult, onError } = this.#options;
    while (!this.#stopped) {
      const pace = bucket.take();
      if (pace > 0) {
        await this.#sleep(pace);
        continue;
      }
      let result: HealthQueryResult;
      try {
        result = await query(this.#failed ? 0n : this.#index, this.#abort.signal);
        if (result.index === undefined) throw new MissingIndexError(this.service);
      } catch (err) {
        if (this.#stopped) return;
        const delay = backoff.next();
        this.#failed = true;
        onError(err, delay);
        await this.#sleep(delay);
        continue;
      }
      if (this.#stopped) return;
      backoff.reset();
      this.#index = nextIndex(this.#failed ? 0n : this.#index, result.index);
      this.#failed = false;
      try {
        onResult(result);
      } catch (err) {
        // A consumer bug must not end the watch; it is reported like a failed fetch.
        onError(err, 0);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}
