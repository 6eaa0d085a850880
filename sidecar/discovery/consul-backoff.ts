/**
 * Pacing for talking to Consul, free of I/O and timers so it can be tested under fake time:
 * capped exponential backoff with jitter for failures, and a token bucket so a blocking-query loop that
 * Consul keeps answering at once (index not moving, index reset) cannot spin.
 */

/** Capped exponential backoff: the n-th consecutive failure waits a jittered share of min(max, min x 2^n). */
export class ExponentialBackoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #failures = 0;

  constructor(minMs: number, maxMs: number, random: () => number = Math.random) {
    if (!(minMs > 0) || !(maxMs >= minMs)) throw new RangeError(`backoff needs 0 < min <= max, got min ${minMs} ms, max ${maxMs} ms`);
    this.#minMs = minMs;
    this.#maxMs = maxMs;
    this.#random = random;
  }

  /** Consecutive failures so far. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Delay before the next attempt after one more failure. "Equal jitter": half the capped step is
   * fixed so retries never bunch at 0, the other half random so many sidecars do not retry in step.
   */
  next(): number {
    const step = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(this.#failures, 52));
    this.#failures++;
    return Math.round(step / 2 + this.#random() * (step / 2));
  }

  /** Called on success: the next failure starts from `min` again. */
  reset(): void {
    this.#failures = 0;
  }
}

/** A token bucket: `burst` calls back to back, then one per `intervalMs` on average. */
export class TokenBucket {
  readonly #burst: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #tokens: number;
  #updatedAt: number;

  constructor(burst: number, intervalMs: number, now: () => number = Date.now) {
    if (!(burst >= 1) || !(intervalMs >= 0)) throw new RangeError(`token bucket needs burst >= 1 and interval >= 0, got ${burst}, ${intervalMs} ms`);
    this.#burst = burst;
    this.#intervalMs = intervalMs;
    this.#now = now;
    this.#tokens = burst;
    this.#updatedAt = now();
  }

  /** Takes a token if one is available and returns 0, else returns the ms until one will be. */
  take(): number {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.#tokens) * this.#intervalMs);
  }

  #refill(): void {
    const now = this.#now();
    const elapsed = Math.max(0, now - this.#updatedAt);
    this.#updatedAt = now;
    this.#tokens = this.#intervalMs === 0 ? this.#burst : Math.min(this.#burst, this.#tokens + elapsed / this.#intervalMs);
  }
}
