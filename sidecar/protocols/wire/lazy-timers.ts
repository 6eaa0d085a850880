/**
 * Timers for limits a connection applies to every request it carries, made so that a request costs no
 * timer operation. Node's refresh() reads the clock and looks its duration up in a dictionary keyed by
 * integers (SipHash): ~250 instructions, and a small request used to make seven of them. Both timers
 * here keep one node timer per connection and do their work when it fires instead.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/**
 * A deadline per request (a performance.now() time): setting one is a store. At most one node timer is
 * pending; it is armed only when none is pending that fires by the new deadline, and when it fires
 * before the deadline in force (a later request's), it re-arms for the rest. A busy keep-alive
 * connection so makes one timer operation per timeout period instead of one per request. Precise to
 * the millisecond: for timeouts users set in milliseconds (response headers).
 */
export class DeadlineTimer {
  readonly #onExpired: () => void;
  #timer: NodeJS.Timeout | null = null;
  /** When the pending timer fires (performance.now() time); Infinity when none is pending. */
  #due = Infinity;
  #deadline = Infinity;

  constructor(onExpired: () => void) {
    this.#onExpired = onExpired;
  }

  /** The deadline in force from now on (Infinity: none). `now`: a clock reading the caller already has, used only to arm. */
  set(deadline: number, now?: number): void {
    this.#deadline = deadline;
    if (deadline === Infinity || this.#due <= deadline) return;
    this.#arm(now ?? performance.now());
  }

  /** No deadline and no pending timer (the connection closed): nothing keeps its owner alive. */
  clear(): void {
    this.#deadline = Infinity;
    this.#due = Infinity;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(now: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    const delay = Math.max(1, Math.ceil(this.#deadline - now));
    this.#due = now + delay;
    this.#timer = setTimeout(this.#fire, delay).unref();
  }

  readonly #fire = (): void => {
    this.#timer = null;
    this.#due = Infinity;
    const deadline = this.#deadline;
    if (deadline === Infinity) return;
    // Node's timers count from the event loop's cached time: one may fire a little before the deadline.
    const now = performance.now();
    if (now < deadline) {
      this.#arm(now);
      return;
    }
    this.#deadline = Infinity;
    this.#onExpired();
  };
}

/** Bytes a socket has read and been given to write: it moved if this did (a QuietWatch's counter for a connection). */
export function socketBytes(socket: Socket): number {
  return socket.bytesRead + (socket.bytesWritten ?? 0);
}

/** Looks per limit: how late a silence limit may be met, as a fraction of it. */
const LOOKS = 4;

/**
 * How a QuietWatch meets its limit: `atLeast` after at least `ms` of silence and at most a quarter more
 * (a timeout: never cut a peer early); `atMost` before `ms` of silence has passed, after at least three
 * quarters of it (closing an idle pooled connection before the server's own keep-alive timeout does).
 */
export type QuietBound = 'atLeast' | 'atMost';

/**
 * A silence limit that costs the request path nothing: every quarter of `ms` it reads a counter its
 * owner keeps anyway (a socket's bytes read and written) and calls `onQuiet` once the counter has not
 * moved for long enough. The last movement (or watch()/restart()) came at most one look before the
 * look that saw it, so the silence counted in whole looks from that look is between the true silence
 * less a look and the true silence: counting to `ms` is never early (`atLeast`), counting to `ms` less
 * a look is never late (`atMost`). For limits in seconds, not for deadlines users set in milliseconds.
 * `onQuiet` is called at every look while the silence lasts, with the silence counted so far; the
 * owner decides whether it applies.
 */
export class QuietWatch {
  readonly #count: () => number;
  readonly #onQuiet: (quietMs: number) => void;
  readonly #bound: QuietBound;
  /** Silence in whole looks at which `onQuiet` is called. */
  #threshold = 0;
  #timer: NodeJS.Timeout | null = null;
  #ms = 0;
  #lookMs = 0;
  #quietMs = 0;
  #last = -1;

  constructor(count: () => number, onQuiet: (quietMs: number) => void, bound: QuietBound = 'atLeast') {
    this.#count = count;
    this.#onQuiet = onQuiet;
    this.#bound = bound;
  }

  /** Counts silence from now, against `ms` (0: stops looking). No timer operation when `ms` is unchanged. */
  watch(ms: number): void {
    if (ms !== this.#ms) {
      this.stop();
      this.#ms = ms;
      if (ms > 0) {
        const lookMs = (this.#lookMs = Math.max(1, Math.floor(ms / LOOKS)));
        this.#threshold = this.#bound === 'atLeast' ? ms : ms - lookMs;
        this.#timer = setInterval(this.#look, lookMs).unref();
      }
    }
    this.restart();
  }

  /** Counts silence from now again: activity the counter does not show (a consumer ready again). */
  restart(): void {
    this.#quietMs = 0;
    this.#last = -1;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#ms = 0;
  }

  readonly #look = (): void => {
    const count = this.#count();
    if (count !== this.#last) {
      this.#last = count;
      this.#quietMs = 0;
      return;
    }
    this.#quietMs += this.#lookMs;
    if (this.#quietMs >= this.#threshold) this.#onQuiet(this.#quietMs);
  };
}
