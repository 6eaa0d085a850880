/**
 * One unref'd timer a connection keeps for its whole life and re-arms per request: refresh() when the
 * duration is the one it already has (a fired timer is re-armed too), recreated only when the duration
 * changes, none while it is 0. No timer is created per request.
 */
export class ConnectionTimer {
  #timer: NodeJS.Timeout | null = null;
  #ms = 0;
  readonly #onFire: () => void;

  constructor(onFire: () => void) {
    this.#onFire = onFire;
  }

  /** The duration it was last armed with (0: disabled). */
  get ms(): number {
    return this.#ms;
  }

  /** Fires `ms` from now (0 disables it). */
  arm(ms: number): void {
    if (ms !== this.#ms) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = ms > 0 ? setTimeout(this.#onFire, ms).unref() : null;
      this.#ms = ms;
    } else this.#timer?.refresh();
  }

  /** Pushes an armed timer back by its duration, from now. */
  refresh(): void {
    this.#timer?.refresh();
  }

  /** Stops it, so it neither fires nor keeps its owner alive; a later arm() starts a new one. */
  clear(): void {
    if (this.#timer) clearTimeout(this.#timer);
    // Forget it: arm() with the same duration would otherwise refresh() it, which revives a cleared timer.
    this.#timer = null;
    this.#ms = 0;
  }
}
