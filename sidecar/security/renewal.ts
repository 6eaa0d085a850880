/**
 * When to renew a certificate: at ~70% of its remaining life (Linkerd's default), jittered ±5% so a
 * fleet started together does not hit the CA together; and how long to wait after a failed attempt.
 */

export const RENEW_AT_FRACTION = 0.7;
export const RENEW_JITTER_FRACTION = 0.05;
export const RETRY_BASE_MS = 500;
export const RETRY_MAX_MS = 30_000;

/** Milliseconds from now until renewal, for a certificate with `remainingMs` of validity left. */
export function renewalDelay(remainingMs: number, random: () => number = Math.random): number {
  if (remainingMs <= 0) return 0;
  const fraction = RENEW_AT_FRACTION + (random() * 2 - 1) * RENEW_JITTER_FRACTION;
  return Math.round(remainingMs * fraction);
}

/**
 * Wait before retry `attempt` (1-based) after a failed renewal: exponential with full jitter, never past
 * the point where the current certificate would lapse (retry sooner rather than serve an expired one).
 */
export function retryDelay(attempt: number, remainingMs: number, random: () => number = Math.random): number {
  const cap = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(attempt - 1, 16));
  const delay = Math.max(RETRY_BASE_MS / 2, Math.floor(cap * random()));
  return remainingMs > 0 ? Math.min(delay, Math.max(RETRY_BASE_MS / 2, Math.floor(remainingMs / 2))) : delay;
}
