/** The cap on a backoff delay, as a multiple of the base (Envoy: max interval = 10 x base). */
export const BACKOFF_CAP_FACTOR = 10;

/**
 * Exponential backoff with full jitter: the delay before retry `n` (1 = first retry) is uniform in
 * [0, min(base x 2^(n-1), 10 x base)]. Jitter keeps many clients that failed together from retrying
 * together. `random` returns [0, 1) and is injected for tests.
 */
export function backoffDelay(retry: number, baseMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(baseMs * 2 ** Math.max(0, retry - 1), baseMs * BACKOFF_CAP_FACTOR);
  return Math.floor(random() * ceiling);
}
