/**
 * When the edge renews its ACME certificate and how long it waits after a failed order: pure functions
 * of the certificate's validity and an injected clock and random source (tested under fake time).
 */

/** Renewals are spread up to this share of `renewBefore` earlier, so a fleet does not order together. */
export const RENEW_JITTER_FRACTION = 0.1;
export const MAX_RENEW_JITTER_MS = 86_400_000;
/** A certificate living shorter than `renewBefore` is renewed at this share of its life (Let's Encrypt's 2/3). */
export const SHORT_LIVED_RENEW_AT = 2 / 3;
/** Node timers overflow past 2^31-1 ms (about 24.8 days): longer waits are taken in steps. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface Validity {
  readonly notBefore: number;
  readonly notAfter: number;
}

/**
 * Epoch ms at which to renew: `renewBefore` before expiry, jittered earlier; a certificate whose whole
 * life is shorter than `renewBefore` (a test CA, short-lived certificates) at 2/3 of its life instead,
 * so a fresh certificate is never renewed in a loop.
 */
export function renewalTime(validity: Validity, renewBeforeMs: number, random: () => number = Math.random): number {
  const lifetime = validity.notAfter - validity.notBefore;
  if (lifetime <= renewBeforeMs) {
    const jitter = random() * lifetime * 0.05;
    return Math.round(validity.notBefore + lifetime * SHORT_LIVED_RENEW_AT - jitter);
  }
  const jitter = random() * Math.min(renewBeforeMs * RENEW_JITTER_FRACTION, MAX_RENEW_JITTER_MS);
  return Math.round(validity.notAfter - renewBeforeMs - jitter);
}

/**
 * Wait before the next order after `failures` failed ones in a row (1-based): doubling from `minMs` up to
 * `maxMs`, with the upper half jittered ("equal jitter", never shorter than half the step).
 */
export function retryDelay(failures: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const step = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(failures - 1, 0), 30));
  return Math.round(step / 2 + (random() * step) / 2);
}

/** A setTimeout for any delay (waits past MAX_TIMER_MS are chained); returns a cancel function. */
export function setLongTimeout(callback: () => void, delayMs: number, now: () => number = Date.now): () => void {
  const due = now() + Math.max(0, delayMs);
  let timer: NodeJS.Timeout;
  const arm = () => {
    const left = due - now();
    if (left > MAX_TIMER_MS) {
      timer = setTimeout(arm, MAX_TIMER_MS);
    } else {
      timer = setTimeout(callback, Math.max(0, left));
    }
    timer.unref();
  };
  arm();
  return () => clearTimeout(timer);
}
