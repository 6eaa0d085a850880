/** Config of token-bucket rate limits and listener connection limits. */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_RATE_LIMIT_MAX_KEYS = 10_000;
export const DEFAULT_ACCEPT_QUEUE = 128;
export const DEFAULT_QUEUE_TIMEOUT_MS = 5000;

export const rateLimitSchema = z
  .strictObject({
    requestsPerSecond: z.number().positive().describe('Tokens added per second (sustained rate)'),
    burst: z.int().min(1).optional().describe('Bucket size: requests allowed at once after a quiet period (default: requestsPerSecond rounded up)'),
    key: z.enum(['none', 'source_ip', 'header', 'identity']).default('none').describe('none: one bucket for all; source_ip; header (see `header`); identity: the caller SPIFFE ID (inbound with mTLS), else the source IP (default none)'),
    header: z.string().min(1).toLowerCase().optional().describe('Header whose value is the client key when key is "header"; requests without it share one bucket'),
    maxKeys: z.int().min(1).default(DEFAULT_RATE_LIMIT_MAX_KEYS).describe(`Client buckets kept; the least recently used is dropped beyond this (default ${DEFAULT_RATE_LIMIT_MAX_KEYS})`),
  })
  .refine((c) => c.key !== 'header' || c.header !== undefined, { error: 'key "header" needs `header` (the header name)', path: ['header'] })
  .describe('Token-bucket rate limit; over the limit: 429 with retry-after');

export const connectionLimitSchema = z
  .strictObject({
    maxConnections: z.int().min(1).describe('Client connections served at once on this listener (HAProxy maxconn)'),
    acceptQueue: z.int().min(0).default(DEFAULT_ACCEPT_QUEUE).describe(`Connections held (unread) while the listener is full; beyond this they are closed at once (default ${DEFAULT_ACCEPT_QUEUE})`),
    queueTimeout: duration(DEFAULT_QUEUE_TIMEOUT_MS, 'A queued connection not served within this time is closed'),
  })
  .describe('Connection limit per listener, with a bounded queue');

export type RateLimitConfig = z.infer<typeof rateLimitSchema>;
export type ConnectionLimitConfig = z.infer<typeof connectionLimitSchema>;
