/**
 * The sidecar's own TLS credentials: a fresh key per certificate, a CSR to the CA, renewal at ~70% of
 * the lifetime (jittered), periodic trust-bundle refresh, and a change callback so listeners and
 * upstream transports swap contexts without restarting.
 */
import { X509Certificate } from 'node:crypto';
import { createCsr } from '../../certs/x509.ts';
import { generateKey } from '../../certs/keys.ts';
import { identityFromSan, spiffeId, type Identity } from '../../certs/spiffe.ts';
import { meshError } from '../errors.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { CertificateSource } from './ca-source.ts';
import { renewalDelay, retryDelay } from './renewal.ts';

/** What TLS contexts are built from. */
export interface TlsMaterial {
  readonly identity: Identity;
  readonly spiffeId: string;
  readonly keyPem: string;
  /** Leaf then intermediate. */
  readonly chainPem: string;
  readonly trustBundle: string;
  readonly notAfter: Date;
}

export interface CredentialsOptions {
  readonly source: CertificateSource;
  readonly namespace: string;
  readonly service: string;
  /** Expected trust domain; undefined accepts the CA's. */
  readonly trustDomain: string | undefined;
  readonly leafTtlMs: number;
  readonly bundleRefreshMs: number;
  readonly events: MeshEvents;
  readonly log: Logger;
  readonly random?: () => number;
}

export class Credentials {
  readonly #options: CredentialsOptions;
  readonly #listeners: Array<(material: TlsMaterial) => void> = [];
  #material: TlsMaterial | undefined;
  #renewTimer: NodeJS.Timeout | undefined;
  #bundleTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #stopped = false;

  constructor(options: CredentialsOptions) {
    this.#options = options;
  }

  /** The current credentials; only after `start` resolved. */
  get material(): TlsMaterial {
    if (!this.#material) throw new Error('credentials not started');
    return this.#material;
  }

  /** Called with new material after every renewal or trust-bundle change. */
  onChange(listener: (material: TlsMaterial) => void): void {
    this.#listeners.push(listener);
  }

  /** Obtains the first certificate; rejects with MESH_ERR_TLS_NO_CERTIFICATE naming the CA. */
  async start(): Promise<TlsMaterial> {
    try {
      await this.#renew();
    } catch (err) {
      throw meshError('TLS_NO_CERTIFICATE', `mTLS is on but no certificate could be obtained from ${this.#options.source.description}; refusing to serve plaintext. ${(err as Error).message}`, err);
    }
    this.#scheduleBundleRefresh();
    return this.material;
  }

  async #renew(): Promise<void> {
    const { source, service, namespace } = this.#options;
    const key = generateKey('ec-p256');
    const keyPem = key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    const previous = this.#material;
    const csr = createCsr({ commonName: service, publicKey: key.publicKey, privateKey: key.privateKey });
    const issued = await source.issue(csr, this.#options.leafTtlMs, previous);
    const leaf = new X509Certificate(issued.chainPem);
    const identity = identityFromSan(leaf.subjectAltName);
    if (!identity || identity.service !== service || identity.namespace !== namespace) {
      throw meshError('TLS_NO_CERTIFICATE', `${source.description} issued a certificate for ${leaf.subjectAltName ?? 'no SAN'}, expected service ${namespace}/${service}`);
    }
    if (this.#options.trustDomain !== undefined && identity.trustDomain !== this.#options.trustDomain) {
      throw meshError('TLS_NO_CERTIFICATE', `${source.description} is for trust domain "${identity.trustDomain}" but security.trustDomain is "${this.#options.trustDomain}"`);
    }
    if (!leaf.checkPrivateKey(key.privateKey)) throw meshError('TLS_NO_CERTIFICATE', `${source.description} returned a certificate for another key`);
    this.#set({ identity, spiffeId: spiffeId(identity), keyPem, chainPem: issued.chainPem, trustBundle: issued.trustBundle, notAfter: issued.notAfter });
    this.#options.events.emit('certificate', { identity: spiffeId(identity), notAfter: issued.notAfter });
    this.#options.log.info({ identity: spiffeId(identity), notAfter: issued.notAfter.toISOString(), ca: source.description }, 'certificate loaded');
    this.#failures = 0;
    this.#scheduleRenewal(renewalDelay(issued.notAfter.getTime() - Date.now(), this.#options.random));
  }

  #set(material: TlsMaterial): void {
    this.#material = material;
    for (const listener of this.#listeners) listener(material);
  }

  #scheduleRenewal(delayMs: number): void {
    clearTimeout(this.#renewTimer);
    if (this.#stopped) return;
    this.#renewTimer = setTimeout(() => {
      this.#renew().catch((err: unknown) => {
        this.#failures++;
        const remaining = this.material.notAfter.getTime() - Date.now();
        const wait = retryDelay(this.#failures, remaining, this.#options.random);
        // Loud: an expired certificate means peers refuse us; there is no plaintext to fall back to.
        this.#options.log.error({ err, ca: this.#options.source.description, attempt: this.#failures, retryInMs: wait, expiresInMs: remaining }, 'certificate renewal failed');
        this.#scheduleRenewal(wait);
      });
    }, delayMs);
    this.#renewTimer.unref();
  }

  #scheduleBundleRefresh(): void {
    if (this.#stopped) return;
    this.#bundleTimer = setTimeout(() => {
      this.#options.source
        .trustBundle()
        .then((bundle) => {
          if (this.#stopped || !this.#material || bundle === this.#material.trustBundle) return;
          this.#options.log.info({ roots: bundle.split('BEGIN CERTIFICATE').length - 1 }, 'trust bundle changed');
          this.#set({ ...this.#material, trustBundle: bundle });
        })
        .catch((err: unknown) => this.#options.log.warn({ err, ca: this.#options.source.description }, 'trust bundle refresh failed'))
        .finally(() => this.#scheduleBundleRefresh());
    }, this.#options.bundleRefreshMs);
    this.#bundleTimer.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#renewTimer);
    clearTimeout(this.#bundleTimer);
  }
}
