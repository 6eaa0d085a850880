/** Config of the retry policy: which failures are retried, how often, how far apart, within what budget. */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_RETRY_MAX_ATTEMPTS = 3;
export const DEFAULT_RETRY_STATUSES = [502, 503, 504];
export const DEFAULT_RETRY_BACKOFF_BASE_MS = 25;
export const DEFAULT_RETRY_PER_TRY_TIMEOUT_MS = 0;
export const DEFAULT_RETRY_MAX_BODY_BYTES = 64 * 1024;
export const DEFAULT_RETRY_BUDGET_RATIO = 0.2;
export const DEFAULT_RETRY_BUDGET_MIN_PER_SECOND = 10;
export const DEFAULT_RETRY_BUDGET_WINDOW_MS = 10_000;

export const retryBudgetSchema = z
  .strictObject({
    ratio: z.number().min(0).max(10).default(DEFAULT_RETRY_BUDGET_RATIO).describe(`Retries allowed as a fraction of requests in the window, as in Linkerd (default ${DEFAULT_RETRY_BUDGET_RATIO})`),
    minRetriesPerSecond: z.number().min(0).default(DEFAULT_RETRY_BUDGET_MIN_PER_SECOND).describe(`Retries always allowed per second, so low traffic can still retry (default ${DEFAULT_RETRY_BUDGET_MIN_PER_SECOND})`),
    window: duration(DEFAULT_RETRY_BUDGET_WINDOW_MS, 'Sliding window over which requests and retries are counted'),
  })
  .prefault({})
  .describe('Retry budget: retries <= ratio x requests in the window + minRetriesPerSecond x window seconds, so retries cannot amplify an outage');

export const retrySchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Retry failed attempts on another endpoint (default true; idempotent methods only, except connect failures)'),
    maxAttempts: z.int().min(1).max(10).default(DEFAULT_RETRY_MAX_ATTEMPTS).describe(`Attempts per request including the first (default ${DEFAULT_RETRY_MAX_ATTEMPTS})`),
    statuses: z.array(z.int().min(100).max(599)).default(DEFAULT_RETRY_STATUSES).describe('Response statuses retried for idempotent methods (default 502, 503, 504)'),
    onReset: z.boolean().default(true).describe('Retry idempotent requests whose connection was reset or timed out (default true)'),
    backoffBase: duration(DEFAULT_RETRY_BACKOFF_BASE_MS, 'Base of the exponential backoff between attempts, with full jitter; the cap is 10x the base'),
    perTryTimeout: duration(DEFAULT_RETRY_PER_TRY_TIMEOUT_MS, 'Time allowed for one attempt until response headers; the attempt is aborted and retried. 0: only the request timeout applies'),
    maxBodyBytes: z.int().min(0).default(DEFAULT_RETRY_MAX_BODY_BYTES).describe(`Request bodies up to this size are buffered so they can be resent; larger bodies stream and are not retried (default ${DEFAULT_RETRY_MAX_BODY_BYTES})`),
    budget: retryBudgetSchema,
  })
  .prefault({})
  .describe('Retries: connect failures always; resets, timeouts and listed statuses for idempotent methods; within a budget');

export type RetryConfig = z.infer<typeof retrySchema>;
export type RetryBudgetConfig = z.infer<typeof retryBudgetSchema>;
