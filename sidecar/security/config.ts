/** The `security` config section: mTLS between sidecars, where certificates come from, and who may call whom. */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_LEAF_TTL_MS = 24 * 3_600_000;
export const DEFAULT_BUNDLE_REFRESH_MS = 60_000;
export const MIN_LEAF_TTL_MS = 1000;

const localCa = z
  .strictObject({
    dir: z.string().min(1).describe('Directory of a CA made by `meshlet ca init`; the sidecar signs its own leaf with it (demo, laptop, single host)'),
  })
  .describe('Local CA on this machine');

const remoteCa = z
  .strictObject({
    url: z.url({ protocol: /^https$/, error: 'expected an https:// URL of `meshlet ca serve`' }).describe('URL of the CA API started by `meshlet ca serve`'),
    token: z.string().min(1).optional().describe('Bootstrap token from `meshlet ca token create` (prefer tokenFile: config is shown on /config)'),
    tokenFile: z.string().min(1).optional().describe('File holding the bootstrap token'),
    caFile: z.string().min(1).describe('PEM roots that sign the CA API certificate (bundle.pem from the CA directory)'),
  })
  .refine((ca) => (ca.token === undefined) !== (ca.tokenFile === undefined), { error: 'set exactly one of token or tokenFile' })
  .describe('Remote CA API');

/** A caller and callee of an authorization rule: "*", "svc", "ns/svc", "ns/*" or a full SPIFFE ID. */
const principal = z
  .string()
  .regex(/^(\*|spiffe:\/\/\S+|([a-z0-9][a-z0-9._-]*\/)?([a-z0-9][a-z0-9._-]*|\*))$/i, { error: 'expected "*", "service", "namespace/service", "namespace/*" or a spiffe:// ID' });

export const ruleSchema = z
  .strictObject({
    from: principal.describe('Calling service'),
    to: principal.default('*').describe('Called service (default "*": this sidecar\'s service)'),
    action: z.enum(['allow', 'deny']).describe('allow or deny'),
  })
  .describe('One authorization rule; the most specific matching rule wins, deny on a tie');

export const securitySchema = z
  .strictObject({
    mtls: z.boolean().default(false).describe('Mutual TLS between sidecars: inbound requires a client certificate from the mesh CA, outbound presents ours and checks the peer identity (default false)'),
    trustDomain: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/, { error: 'expected lowercase letters, digits, "." and "-"' })
      .optional()
      .describe('SPIFFE trust domain; must match the CA (default: the CA\'s)'),
    ca: z.union([localCa, remoteCa], { error: 'expected { dir } for a local CA or { url, token | tokenFile, caFile } for a CA API' }).optional().describe('Where the leaf certificate comes from'),
    leafTtl: duration(DEFAULT_LEAF_TTL_MS, 'Lifetime asked for the leaf certificate; renewed at ~70% of it'),
    bundleRefresh: duration(DEFAULT_BUNDLE_REFRESH_MS, 'How often the trust bundle is re-fetched (picks up CA rotations)'),
    identities: z
      .record(z.string(), z.string().regex(/^spiffe:\/\/[^/]+\/\S+$/, { error: 'expected a spiffe:// ID' }))
      .default({})
      .describe('Expected peer SPIFFE ID per upstream name (default spiffe://<trust domain>/ns/<our namespace>/svc/<upstream service>)'),
    plaintextUpstreams: z.array(z.string()).default([]).describe('Upstreams that are not in the mesh and are called in plaintext, by name; every other upstream requires mTLS'),
    authorization: z
      .strictObject({
        default: z.enum(['allow', 'deny']).default('allow').describe('Decision when no rule matches (default allow)'),
        rules: z.array(ruleSchema).default([]).describe('allow/deny rules from caller to callee'),
      })
      .prefault({})
      .describe('Which callers may reach this service (needs mtls: the caller is known by its certificate)'),
  })
  .superRefine((security, ctx) => {
    if (!security.mtls) {
      if (security.authorization.rules.length > 0 || security.authorization.default === 'deny') {
        ctx.addIssue({ code: 'custom', path: ['authorization'], message: 'authorization needs mtls: true (callers are identified by their certificates)' });
      }
      return;
    }
    if (!security.ca) ctx.addIssue({ code: 'custom', path: ['ca'], message: 'mtls: true needs a CA: { dir } (local) or { url, tokenFile, caFile } (CA API)' });
    if (security.leafTtl < MIN_LEAF_TTL_MS) ctx.addIssue({ code: 'custom', path: ['leafTtl'], message: `expected at least ${MIN_LEAF_TTL_MS} ms` });
  })
  .prefault({})
  .describe('mTLS and authorization (see docs/security.md)');

export type SecurityConfig = z.infer<typeof securitySchema>;
export type AuthorizationRule = z.infer<typeof ruleSchema>;
