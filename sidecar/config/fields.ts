import { z } from 'zod';

/** A TCP port, 1-65535. */
export const port = () => z.int({ error: 'expected integer 1-65535' }).min(1, { error: 'expected integer 1-65535' }).max(65535, { error: 'expected integer 1-65535' });

/** A listen port where 0 asks the OS for a free one (tests and the demo use it). */
export const listenPort = () => z.int({ error: 'expected integer 0-65535' }).min(0, { error: 'expected integer 0-65535' }).max(65535, { error: 'expected integer 0-65535' });

/** A DNS name or IP literal. */
export const host = () => z.string({ error: 'expected a host name or IP address' }).min(1, { error: 'expected a host name or IP address' });

/** A service name as used in discovery and SPIFFE IDs. */
export const serviceName = () =>
  z
    .string({ error: 'expected a service name' })
    .regex(/^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/i, { error: 'expected a service name of letters, digits, ".", "_" or "-"' });
