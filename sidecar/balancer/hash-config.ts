/** Config of request-affinity: the hash key for consistent hashing, and sticky cookies. */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_STICKY_COOKIE = 'meshlet-sticky';

export const hashPolicySchema = z
  .strictObject({
    source: z.enum(['header', 'cookie', 'source_ip']).describe('Where the hash key comes from'),
    name: z.string().min(1).optional().describe('Header or cookie name (required for header and cookie)'),
  })
  .refine((c) => c.source === 'source_ip' || c.name !== undefined, { error: 'header and cookie hash sources need `name`', path: ['name'] })
  .describe('Hash key for ring_hash and maglev balancers; requests without the key are spread at random');

export const stickySchema = z
  .strictObject({
    cookie: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { error: 'expected a cookie name (HTTP token)' }).default(DEFAULT_STICKY_COOKIE).describe(`Cookie that pins a client to an endpoint (default ${DEFAULT_STICKY_COOKIE})`),
    maxAge: duration(0, 'Cookie lifetime; 0 makes it a session cookie'),
    secure: z.boolean().default(false).describe('Mark the cookie Secure (default false)'),
  })
  .describe('Cookie-based sticky sessions over any balancer; falls back to the balancer when the pinned endpoint is gone');

export type HashPolicyConfig = z.infer<typeof hashPolicySchema>;
export type StickyConfig = z.infer<typeof stickySchema>;
