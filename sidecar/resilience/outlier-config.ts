/** Config of passive outlier detection (Envoy consecutive-5xx defaults). */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_OUTLIER_CONSECUTIVE_FAILURES = 5;
export const DEFAULT_OUTLIER_BASE_EJECTION_MS = 30_000;
export const DEFAULT_OUTLIER_MAX_EJECTION_MS = 300_000;
export const DEFAULT_OUTLIER_MAX_EJECTION_PERCENT = 10;
export const DEFAULT_OUTLIER_INTERVAL_MS = 10_000;

export const outlierDetectionSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Eject endpoints that keep failing (default true)'),
    consecutiveFailures: z.int().min(1).default(DEFAULT_OUTLIER_CONSECUTIVE_FAILURES).describe(`5xx responses, connect failures, resets or timeouts in a row that eject an endpoint (default ${DEFAULT_OUTLIER_CONSECUTIVE_FAILURES})`),
    baseEjectionTime: duration(DEFAULT_OUTLIER_BASE_EJECTION_MS, 'Ejection lasts this long times the number of times the endpoint was ejected'),
    maxEjectionTime: duration(DEFAULT_OUTLIER_MAX_EJECTION_MS, 'Cap on one ejection'),
    maxEjectionPercent: z.number().min(0).max(100).default(DEFAULT_OUTLIER_MAX_EJECTION_PERCENT).describe(`Most endpoints ejected at once, in percent; at least one may always be ejected, never the last available (default ${DEFAULT_OUTLIER_MAX_EJECTION_PERCENT})`),
    interval: duration(DEFAULT_OUTLIER_INTERVAL_MS, 'Each interval an endpoint stays in without ejection lowers its ejection multiplier by one'),
  })
  .prefault({})
  .describe('Outlier detection: passive health from real traffic');

export type OutlierDetectionConfig = z.infer<typeof outlierDetectionSchema>;
