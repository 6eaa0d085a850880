/**
 * The certificate authority: signs leaf certificates from CSRs for an identity the caller has already
 * proven (bootstrap token, current certificate, or local file access), and hands out the trust bundle.
 * The CSR may only ask for that identity: the CA decides the SANs, never the requester.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { meshError } from '../sidecar/errors.ts';
import { generateKey } from './keys.ts';
import { spiffeId, type Identity } from './spiffe.ts';
import { activeGeneration, loadGenerations, readManifest, type CaManifest, type LoadedGeneration } from './store.ts';
import { createCertificate, CsrError, parseCsr } from './x509.ts';

export const DEFAULT_LEAF_TTL_MS = 24 * 3_600_000;
/** Leaves are valid from slightly in the past, so a peer whose clock runs behind accepts them. */
export const CLOCK_SKEW_MS = 20_000;

export interface LeafRequest {
  readonly csrPem: string;
  /** The identity the caller proved; the CSR must not ask for another. */
  readonly namespace: string;
  readonly service: string;
  readonly ttlMs?: number;
  /** Validity override, for tests of expired certificates. */
  readonly validity?: { readonly notBefore: Date; readonly notAfter: Date };
}

export interface IssuedLeaf {
  readonly spiffeId: string;
  /** Leaf then intermediate, PEM. */
  readonly chainPem: string;
  readonly notAfter: Date;
  /** Every trusted root, PEM. */
  readonly trustBundle: string;
}

export class CertificateAuthority {
  readonly dir: string;
  #manifest: CaManifest;
  #generations: LoadedGeneration[];
  #manifestMtimeMs: number;

  private constructor(dir: string, manifest: CaManifest, generations: LoadedGeneration[], mtimeMs: number) {
    this.dir = dir;
    this.#manifest = manifest;
    this.#generations = generations;
    this.#manifestMtimeMs = mtimeMs;
  }

  /** Loads the CA in `dir` (see `meshlet ca init`). */
  static async load(dir: string): Promise<CertificateAuthority> {
    const mtimeMs = await manifestMtime(dir);
    const manifest = await readManifest(dir);
    return new CertificateAuthority(dir, manifest, await loadGenerations(dir, manifest), mtimeMs);
  }

  /** Re-reads the CA if `ca.json` changed (a rotation or retirement by another process); true if it did. */
  async refresh(): Promise<boolean> {
    const mtimeMs = await manifestMtime(this.dir);
    if (mtimeMs === this.#manifestMtimeMs) return false;
    const manifest = await readManifest(this.dir);
    this.#generations = await loadGenerations(this.dir, manifest);
    this.#manifest = manifest;
    this.#manifestMtimeMs = mtimeMs;
    return true;
  }

  get trustDomain(): string {
    return this.#manifest.trustDomain;
  }

  get maxLeafTtlMs(): number {
    return this.#manifest.maxLeafTtlMs;
  }

  /** Every trusted root (old and new during a rotation), PEM concatenated. */
  trustBundle(): string {
    return this.#generations.map((g) => g.rootPem).join('');
  }

  #signer(now: Date): LoadedGeneration {
    return activeGeneration(this.#generations, now);
  }

  /** Signs a leaf for `request`'s identity; throws MESH_ERR_CA_BAD_CSR or MESH_ERR_CA_FORBIDDEN_IDENTITY. */
  issueLeaf(request: LeafRequest, now = new Date()): IssuedLeaf {
    const identity: Identity = { trustDomain: this.trustDomain, namespace: request.namespace, service: request.service };
    const id = spiffeId(identity);
    let csr;
    try {
      csr = parseCsr(request.csrPem);
    } catch (err) {
      if (err instanceof CsrError) throw meshError('CA_BAD_CSR', `malformed CSR: ${err.message}`);
      throw err;
    }
    const dnsNames = [request.service, `${request.service}.${request.namespace}`];
    if (csr.commonName !== undefined && csr.commonName !== request.service) {
      throw meshError('CA_FORBIDDEN_IDENTITY', `CSR common name "${csr.commonName}" is not the service "${request.service}" this credential is for`);
    }
    const otherUri = csr.uris.find((u) => u !== id);
    if (otherUri) throw meshError('CA_FORBIDDEN_IDENTITY', `CSR asks for URI SAN "${otherUri}" but this credential grants only ${id}`);
    const otherDns = csr.dnsNames.find((d) => !dnsNames.includes(d));
    if (otherDns) throw meshError('CA_FORBIDDEN_IDENTITY', `CSR asks for DNS SAN "${otherDns}" but this credential grants only ${dnsNames.join(', ')}`);
    const signer = this.#signer(now);
    const intermediate = new X509Certificate(signer.intermediatePem);
    const ttlMs = Math.min(request.ttlMs ?? DEFAULT_LEAF_TTL_MS, this.maxLeafTtlMs);
    const validity = request.validity ?? {
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      // Never outlive the intermediate: a chain is only as valid as its shortest link.
      notAfter: new Date(Math.min(now.getTime() + ttlMs, Date.parse(intermediate.validTo))),
    };
    const leafPem = createCertificate({
      subject: { commonName: request.service },
      issuer: issuerName(intermediate),
      publicKey: csr.publicKey,
      signingKey: signer.intermediateKey,
      issuerPublicKey: intermediate.publicKey,
      notBefore: validity.notBefore,
      notAfter: validity.notAfter,
      uris: [id],
      dnsNames,
    });
    return { spiffeId: id, chainPem: leafPem + signer.intermediatePem, notAfter: validity.notAfter, trustBundle: this.trustBundle() };
  }

  /** A serving certificate for the CA's own HTTPS API (key generated here, never leaves the process). */
  issueServerCertificate(hosts: { dnsNames: string[]; ipAddresses: string[] }, ttlMs: number, now = new Date()): { keyPem: string; chainPem: string; notAfter: Date } {
    const signer = this.#signer(now);
    const intermediate = new X509Certificate(signer.intermediatePem);
    const key = generateKey('ec-p256');
    const notAfter = new Date(Math.min(now.getTime() + ttlMs, Date.parse(intermediate.validTo)));
    const pem = createCertificate({
      subject: { organization: 'Meshlet', commonName: `Meshlet CA API ${this.trustDomain}` },
      issuer: issuerName(intermediate),
      publicKey: key.publicKey,
      signingKey: signer.intermediateKey,
      issuerPublicKey: intermediate.publicKey,
      notBefore: new Date(now.getTime() - CLOCK_SKEW_MS),
      notAfter,
      dnsNames: hosts.dnsNames,
      ipAddresses: hosts.ipAddresses,
      extKeyUsage: { serverAuth: true },
    });
    return { keyPem: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, chainPem: pem + signer.intermediatePem, notAfter };
  }
}

/** The issuer name for certificates an intermediate signs: its own subject, field by field. */
function issuerName(intermediate: X509Certificate): { organization?: string; commonName: string } {
  const fields = new Map(intermediate.subject.split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
  const organization = fields.get('O');
  return { ...(organization ? { organization } : {}), commonName: fields.get('CN') ?? '' };
}

async function manifestMtime(dir: string): Promise<number> {
  return stat(join(dir, 'ca.json')).then(
    (s) => s.mtimeMs,
    () => 0,
  );
}
