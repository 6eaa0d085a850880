/**
 * A retry budget (Linkerd's, after Finagle): every request deposits, every retry withdraws, and a retry
 * is allowed only while retries in the sliding window stay under `ratio` x requests plus a floor of
 * `minRetriesPerSecond` x window seconds. When everything fails, retries are capped at ~ratio extra
 * load instead of multiplying it by the attempt count. Pure: the clock is injected.
 */
const SLOTS = 10;

export interface RetryBudgetOptions {
  readonly ratio: number;
  readonly minRetriesPerSecond: number;
  readonly windowMs: number;
}

export class RetryBudget {
  readonly #ratio: number;
  readonly #reserve: number;
  readonly #slotMs: number;
  readonly #now: () => number;
  readonly #deposits = new Float64Array(SLOTS);
  readonly #withdrawals = new Float64Array(SLOTS);
  /** Absolute slot number (time / slotMs) of the newest slot. */
  #current: number;

  constructor(options: RetryBudgetOptions, now: () => number = Date.now) {
    this.#ratio = options.ratio;
    this.#reserve = options.minRetriesPerSecond * (options.windowMs / 1000);
    this.#slotMs = Math.max(1, options.windowMs / SLOTS);
    this.#now = now;
    this.#current = Math.floor(now() / this.#slotMs);
  }

  /** Records a request (the first attempt). */
  deposit(): void {
    this.#deposits[this.#advance()]!++;
  }

  /** Takes one retry from the budget; false (and nothing taken) when it is spent. */
  tryWithdraw(): boolean {
    const slot = this.#advance();
    const { requests, retries } = this.#totals();
    if (retries + 1 > this.#reserve + this.#ratio * requests) return false;
    this.#withdrawals[slot]!++;
    return true;
  }

  /** Requests and retries in the window and the retries still allowed now, for the admin API. */
  snapshot(): { requests: number; retries: number; retriesAllowed: number } {
    this.#advance();
    const { requests, retries } = this.#totals();
    return { requests, retries, retriesAllowed: Math.max(0, Math.floor(this.#reserve + this.#ratio * requests - retries)) };
  }

  #totals(): { requests: number; retries: number } {
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < SLOTS; i++) {
      requests += this.#deposits[i]!;
      retries += this.#withdrawals[i]!;
    }
    return { requests, retries };
  }

  /** Clears slots that fell out of the window and returns the index of the current one. */
  #advance(): number {
    const now = Math.floor(this.#now() / this.#slotMs);
    const gap = now - this.#current;
    if (gap > 0) {
      for (let i = 1; i <= Math.min(gap, SLOTS); i++) {
        const slot = (this.#current + i) % SLOTS;
        this.#deposits[slot] = 0;
        this.#withdrawals[slot] = 0;
      }
      this.#current = now;
    }
    return this.#current % SLOTS;
  }
}
