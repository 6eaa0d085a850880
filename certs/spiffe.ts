/**
 * SPIFFE identities as Meshlet issues them: `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`,
 * carried as the one URI SAN of a leaf certificate.
 */

export interface Identity {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly service: string;
}

const NAME = /^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$/i;
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/;

/** True for a trust domain SPIFFE allows (lowercase letters, digits, dots, dashes). */
export function isTrustDomain(value: string): boolean {
  return TRUST_DOMAIN.test(value);
}

/** True for a namespace or service name that can sit in a SPIFFE path segment. */
export function isIdentityName(value: string): boolean {
  return NAME.test(value);
}

/** The SPIFFE ID URI of an identity. */
export function spiffeId(identity: Identity): string {
  return `spiffe://${identity.trustDomain}/ns/${identity.namespace}/svc/${identity.service}`;
}

/** Parses a Meshlet SPIFFE ID; undefined when `uri` is not one. */
export function parseSpiffeId(uri: string): Identity | undefined {
  const match = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/svc\/([^/]+)$/.exec(uri);
  if (!match) return undefined;
  const [, trustDomain, namespace, service] = match as unknown as [string, string, string, string];
  if (!isTrustDomain(trustDomain) || !isIdentityName(namespace) || !isIdentityName(service)) return undefined;
  return { trustDomain, namespace, service };
}

/**
 * The URI SANs in a Node `subjectaltname` string ("URI:spiffe://..., DNS:a"). Node quotes values with
 * commas or quotes as JSON strings; those cannot be SPIFFE IDs of ours, but are decoded honestly.
 */
export function uriSans(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  const uris: string[] = [];
  const re = /(?:^|, )URI:("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (let m = re.exec(subjectAltName); m; m = re.exec(subjectAltName)) {
    const raw = m[1]!;
    uris.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return uris;
}

/** The single SPIFFE identity a certificate's SAN carries; undefined when none or several. */
export function identityFromSan(subjectAltName: string | undefined): Identity | undefined {
  const ids = uriSans(subjectAltName).filter((u) => u.startsWith('spiffe://'));
  return ids.length === 1 ? parseSpiffeId(ids[0]!) : undefined;
}
