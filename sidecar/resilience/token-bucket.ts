/**
 * Token buckets for rate limiting: `ratePerSecond` tokens refill continuously up to `burst`; a request
 * takes one. Pure: callers pass the time, so tests run on fake clocks.
 */
export class TokenBucket {
  readonly #ratePerMs: number;
  readonly #burst: number;
  #tokens: number;
  #updatedAt: number;

  constructor(ratePerSecond: number, burst: number, now: number) {
    this.#ratePerMs = ratePerSecond / 1000;
    this.#burst = burst;
    this.#tokens = burst;
    this.#updatedAt = now;
  }

  /** Takes a token: resolves 0 when taken, else the milliseconds until one will be available. */
  take(now: number): number {
    const elapsed = Math.max(0, now - this.#updatedAt);
    this.#tokens = Math.min(this.#burst, this.#tokens + elapsed * this.#ratePerMs);
    this.#updatedAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.#tokens) / this.#ratePerMs);
  }
}

/** One bucket per client key, the least recently used dropped past `maxKeys` (memory stays bounded). */
export class KeyedTokenBuckets {
  readonly #ratePerSecond: number;
  readonly #burst: number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, TokenBucket>();

  constructor(ratePerSecond: number, burst: number, maxKeys: number) {
    this.#ratePerSecond = ratePerSecond;
    this.#burst = burst;
    this.#maxKeys = maxKeys;
  }

  /** Takes a token from `key`'s bucket; 0 when taken, else ms until one is available. */
  take(key: string, now: number): number {
    let bucket = this.#buckets.get(key);
    if (bucket) {
      // Re-insert so Map order is least- to most-recently used.
      this.#buckets.delete(key);
    } else {
      bucket = new TokenBucket(this.#ratePerSecond, this.#burst, now);
      if (this.#buckets.size >= this.#maxKeys) this.#buckets.delete(this.#buckets.keys().next().value!);
    }
    this.#buckets.set(key, bucket);
    return bucket.take(now);
  }

  get size(): number {
    return this.#buckets.size;
  }
}
