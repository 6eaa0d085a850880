/**
 * The abort of one exchange without an AbortController per request. Creating one (an AbortSignal is an
 * EventTarget with a Map of listener lists) and adding and removing the upstream pool's listener cost
 * ~3.4k instructions per proxied request, 4% of the whole (docs/performance.md, ninth session), for a
 * request that is almost never aborted. The hot path watches this plain object instead; a real
 * AbortSignal is made only when a layer asks for `signal` (a timer, AbortSignal.any, fetch).
 */

/** What the hot path reads of an abort: an AbortSignal has this shape too, so either can be watched. */
export interface AbortWatch {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: 'abort', listener: () => void): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export class ExchangeAbort implements AbortWatch {
  aborted = false;
  reason: unknown = undefined;
  #controller: AbortController | undefined = undefined;
  /** The first listener (usually the only one: the pool's) in a slot of its own, later ones in order after it. */
  #first: (() => void) | undefined = undefined;
  #more: Array<() => void> | undefined = undefined;

  /** A real AbortSignal for the same abort, made on first access (already aborted if this one is). */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.reason);
    }
    return this.#controller.signal;
  }

  /** As on an AbortSignal: called once on abort, never if added after it; adding the same listener twice adds it once. */
  addEventListener(_type: 'abort', listener: () => void): void {
    if (this.aborted || listener === this.#first || this.#more?.includes(listener)) return;
    if (this.#first === undefined) this.#first = listener;
    else (this.#more ??= []).push(listener);
  }

  removeEventListener(_type: 'abort', listener: () => void): void {
    if (listener === this.#first) {
      // The next one moves up, so listeners keep being called in the order they were added.
      this.#first = this.#more?.shift();
      return;
    }
    const i = this.#more?.indexOf(listener) ?? -1;
    if (i >= 0) this.#more!.splice(i, 1);
  }

  /**
   * Aborts once: listeners run in the order added, then those of `signal` if it was made. A listener
   * that throws does not keep the others from running; the first error is rethrown after all ran.
   */
  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
    const listeners = this.#first === undefined ? [] : [this.#first, ...(this.#more ?? [])];
    this.#first = undefined;
    this.#more = undefined;
    let failure: { error: unknown } | undefined;
    for (const listener of listeners) {
      try {
        listener();
      } catch (error) {
        failure ??= { error };
      }
    }
    this.#controller?.abort(this.reason);
    if (failure !== undefined) throw failure.error;
  }
}
