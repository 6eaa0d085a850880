/**
 * The `edge` config section: a TLS listener for traffic from outside the mesh (browsers, clients without
 * mesh certificates), terminating TLS with a certificate from files or from an ACME CA (Let's Encrypt),
 * and handing each request to an HTTP upstream exactly as if it had been sent to that upstream's local
 * port (its routes, resilience layers and telemetry apply).
 */
import process from 'node:process';
import { z } from 'zod';
import { duration } from '../config/duration.ts';
import { host, listenPort, serviceName } from '../config/fields.ts';

export const DEFAULT_EDGE_ADDRESS = '0.0.0.0';
export const DEFAULT_CHALLENGE_PORT = 80;
export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
/** Let's Encrypt certificates last 90 days; renewing 30 days before expiry is its recommendation. */
export const DEFAULT_RENEW_BEFORE_MS = 30 * 86_400_000;
export const DEFAULT_RETRY_MIN_MS = 5_000;
export const DEFAULT_RETRY_MAX_MS = 3_600_000;

/** A DNS name for HTTP-01 validation: letters, digits and "-" labels (wildcards need DNS-01, not offered). */
const domainName = z
  .string()
  .toLowerCase()
  .regex(/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, { error: 'expected a DNS name such as www.example.com (no wildcards: HTTP-01 cannot validate them)' });

export const acmeSchema = z
  .strictObject({
    directoryUrl: z
      .url({ protocol: /^https$/, error: 'expected the https:// URL of an ACME directory' })
      .default(LETS_ENCRYPT_DIRECTORY)
      .describe(`ACME directory (default Let's Encrypt production ${LETS_ENCRYPT_DIRECTORY}; staging: https://acme-staging-v02.api.letsencrypt.org/directory)`),
    email: z.email({ error: 'expected an email address' }).optional().describe('Contact address of the ACME account (expiry notices)'),
    termsOfServiceAgreed: z.literal(true, { error: "set true to agree to the ACME CA's terms of service (required to open an account)" }).describe("Agreement to the CA's terms of service; must be true"),
    domains: z.array(domainName).min(1).describe('Names on the certificate (the first is its subject); each must resolve to this edge for HTTP-01'),
    caFile: z.string().min(1).optional().describe('Extra PEM roots trusted for the ACME directory (a test CA such as Pebble); system roots stay trusted'),
    storageDir: z.string().min(1).describe('Directory for the account key, certificate key and certificate (0700, keys 0600); reused across restarts'),
    renewBefore: duration(DEFAULT_RENEW_BEFORE_MS, 'Renew this long before expiry (jittered earlier by up to 10%, at most 1 day); a certificate shorter-lived than this renews at 2/3 of its life'),
    retryMin: duration(DEFAULT_RETRY_MIN_MS, 'First wait after a failed order; doubles per failure (jittered)'),
    retryMax: duration(DEFAULT_RETRY_MAX_MS, 'Longest wait between failed orders (ACME CAs rate-limit failed validations)'),
    challenge: z
      .strictObject({
        address: host().default(DEFAULT_EDGE_ADDRESS).describe(`Address of the HTTP-01 challenge listener (default ${DEFAULT_EDGE_ADDRESS})`),
        port: listenPort().default(DEFAULT_CHALLENGE_PORT).describe(`Port of the HTTP-01 challenge listener; the CA connects to port 80 of each domain (default ${DEFAULT_CHALLENGE_PORT})`),
      })
      .prefault({})
      .describe('Plain HTTP listener answering /.well-known/acme-challenge/<token>; every other request is redirected to https'),
  })
  .describe('Certificate from an ACME CA (Let\'s Encrypt), obtained with the HTTP-01 challenge and renewed before expiry');

/** One object rather than a union, so a mistake inside `acme` is reported at its own field. */
const tlsSchema = z
  .strictObject({
    certFile: z.string().min(1).optional().describe('PEM certificate chain (leaf first) served at the edge; re-read by admin POST /edge/renew'),
    keyFile: z.string().min(1).optional().describe('PEM private key of certFile (keep it 0600)'),
    acme: acmeSchema.optional(),
  })
  .superRefine((tls, ctx) => {
    const files = tls.certFile !== undefined || tls.keyFile !== undefined;
    if (files && tls.acme) ctx.addIssue({ code: 'custom', message: 'give either certFile and keyFile, or acme, not both' });
    else if (!files && !tls.acme) ctx.addIssue({ code: 'custom', message: 'give certFile and keyFile, or acme: { domains, storageDir, termsOfServiceAgreed }' });
    else if (files && tls.certFile === undefined) ctx.addIssue({ code: 'custom', path: ['certFile'], message: 'keyFile needs certFile' });
    else if (files && tls.keyFile === undefined) ctx.addIssue({ code: 'custom', path: ['keyFile'], message: 'certFile needs keyFile' });
  })
  .describe('Where the edge certificate comes from: certFile + keyFile, or acme');

export const edgeSchema = z
  .strictObject({
    address: host().default(DEFAULT_EDGE_ADDRESS).describe(`Address of the edge TLS listener (default ${DEFAULT_EDGE_ADDRESS}: it faces clients outside the mesh)`),
    port: listenPort().describe('Port of the edge TLS listener (HTTPS, usually 443)'),
    to: serviceName().describe('HTTP upstream (by name) serving edge requests, through its routes, layers and telemetry'),
    tls: tlsSchema,
  })
  .optional()
  .describe('TLS termination for clients outside the mesh (see "Edge TLS and ACME" in the README)');

export type EdgeConfig = NonNullable<z.infer<typeof edgeSchema>>;
export type AcmeConfig = z.infer<typeof acmeSchema>;

export function isAcme(tls: EdgeConfig['tls']): tls is EdgeConfig['tls'] & { acme: AcmeConfig } {
  return tls.acme !== undefined;
}

interface EdgeHost {
  readonly edge?: EdgeConfig | undefined;
  readonly upstreams: ReadonlyArray<{ readonly name: string; readonly protocol: string }>;
  readonly workers: number | 'auto';
}

/**
 * The upstream the edge sends to must exist and speak HTTP/1.1; ACME needs a single worker process (each
 * worker would order its own certificate, and the shared challenge port would send the CA's validation
 * to a worker that does not hold the token). Run by the loader, at start and on reload.
 */
export function edgeIssues(config: EdgeHost, source: string): string[] {
  const { edge } = config;
  if (!edge) return [];
  if (isAcme(edge.tls) && config.workers !== 1) return [`edge.tls.acme: ACME needs workers: 1 (each worker process would order its own certificate), got workers ${JSON.stringify(config.workers)} (${source})`];
  const upstream = config.upstreams.find((u) => u.name === edge.to);
  if (!upstream) return [`edge.to: no upstream named "${edge.to}", got "${edge.to}" (${source})`];
  if (upstream.protocol !== 'http') return [`edge.to: the edge forwards HTTP/1.1 and needs an http upstream, got "${edge.to}" (protocol ${upstream.protocol}) (${source})`];
  return [];
}
