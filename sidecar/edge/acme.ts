/**
 * The edge's ACME certificate: an account key and a fresh certificate key per order, both made here and
 * stored 0600 in `storageDir` (a stored certificate is served at once after a restart); orders answered
 * with the HTTP-01 challenge by the sidecar's own challenge listener (`challengeResponse`); renewal
 * `renewBefore` expiry (jittered); failed orders retried with backoff, logged once per state change,
 * reported as `acme` events (metrics), and never thrown at the process.
 */
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { Agent } from 'node:https';
import { createRequire } from 'node:module';
import { rootCertificates } from 'node:tls';
import acme from 'acme-client';
import { meshError } from '../errors.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { AcmeConfig } from './config.ts';
import { retryDelay, renewalTime, setLongTimeout } from './schedule.ts';
import { AcmeStore, certificateFrom, readField, type EdgeCertificate } from './store.ts';

/** Time allowed for one request to the ACME server. */
export const ACME_REQUEST_TIMEOUT_MS = 30_000;

export type AcmeState = 'obtaining' | 'valid' | 'renewing' | 'failing';

export interface AcmeManagerOptions {
  readonly config: AcmeConfig;
  readonly events: MeshEvents;
  readonly log: Logger;
  /** Called with every certificate to serve (stored at start, then each new one). */
  readonly onCertificate: (certificate: EdgeCertificate) => void;
  readonly random?: () => number;
}

/**
 * Per-origin settings of acme-client's shared HTTP client: extra roots (caFile), a timeout, and no
 * retries of its own (this module retries whole orders with backoff and logs each state change).
 */
const origins = new Map<string, { agent: Agent | undefined; users: number }>();
let interceptorInstalled = false;
const NO_HTTP_RETRIES = 1_000_000;

type AxiosAdapter = (config: { method?: string; url?: string }) => Promise<unknown>;
/** acme-client's own axios (the same module instance), for its Node HTTP adapter. */
const axiosOfAcme = createRequire(createRequire(import.meta.url).resolve('acme-client'))('axios') as { getAdapter(name: string): AxiosAdapter };
const httpAdapter = axiosOfAcme.getAdapter('http');

/**
 * acme-client's response interceptor cannot report a network error it does not retry (it reads the
 * missing response and throws a TypeError): network errors leave the adapter as plain errors without
 * `config`, which that interceptor passes through unchanged.
 */
const adapter: AxiosAdapter = async (config) => {
  try {
    return await httpAdapter(config);
  } catch (err) {
    const e = err as Error & { response?: unknown; code?: string };
    if (e.response !== undefined) throw err;
    throw new Error(`${(config.method ?? 'get').toUpperCase()} ${config.url}: ${e.code ?? e.message}`, { cause: err });
  }
};

function useOrigin(directoryUrl: string, ca: string | undefined): () => void {
  const origin = new URL(directoryUrl).origin;
  const entry = origins.get(origin) ?? { agent: ca === undefined ? undefined : new Agent({ ca: [...rootCertificates, ca], keepAlive: false }), users: 0 };
  entry.users++;
  origins.set(origin, entry);
  if (!interceptorInstalled) {
    interceptorInstalled = true;
    acme.axios.interceptors.request.use((request) => {
      const url = request.url;
      const settings = url && URL.canParse(url) ? origins.get(new URL(url).origin) : undefined;
      if (!settings) return request;
      if (settings.agent) request.httpsAgent = settings.agent;
      request.timeout = ACME_REQUEST_TIMEOUT_MS;
      request.adapter = adapter as never;
      (request as { retryAttempt?: number }).retryAttempt = NO_HTTP_RETRIES;
      return request;
    });
  }
  return () => {
    if (--entry.users === 0) {
      origins.delete(origin);
      entry.agent?.destroy();
    }
  };
}

function newEcKey(): string {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** The first line of an error message, without a trailing period (for logs and status). */
function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.trim() || 'unknown error';
}

export class AcmeManager {
  readonly #options: AcmeManagerOptions;
  readonly #store: AcmeStore;
  /** HTTP-01 tokens being validated -> key authorizations. */
  readonly #tokens = new Map<string, string>();
  #accountKey = '';
  #releaseOrigin: (() => void) | undefined;
  #certificate: EdgeCertificate | undefined;
  #state: AcmeState = 'obtaining';
  #lastError: string | undefined;
  #failures = 0;
  #nextAttempt: Date | undefined;
  #cancelTimer: (() => void) | undefined;
  #order: Promise<EdgeCertificate> | undefined;
  #stopped = false;

  constructor(options: AcmeManagerOptions) {
    this.#options = options;
    this.#store = new AcmeStore(options.config.storageDir);
  }

  get certificate(): EdgeCertificate | undefined {
    return this.#certificate;
  }

  /** What the admin API shows. */
  status(): Record<string, unknown> {
    const { config } = this.#options;
    return {
      mode: 'acme',
      directoryUrl: config.directoryUrl,
      domains: config.domains,
      state: this.#state,
      ...(this.#certificate ? { serialNumber: this.#certificate.serialNumber, notBefore: this.#certificate.notBefore.toISOString(), notAfter: this.#certificate.notAfter.toISOString() } : {}),
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError, failures: this.#failures }),
      ...(this.#nextAttempt ? { nextAttempt: this.#nextAttempt.toISOString() } : {}),
    };
  }

  /** The key authorization for an HTTP-01 token being validated now. */
  challengeResponse(token: string): string | undefined {
    return this.#tokens.get(token);
  }

  /**
   * Checks the storage directory and caFile (errors name the field), loads or makes the account key and
   * loads a stored certificate. Never contacts the CA: `start` does, in the background.
   */
  async prepare(): Promise<void> {
    const { config, log } = this.#options;
    const ca = config.caFile === undefined ? undefined : readField(config.caFile, 'edge.tls.acme.caFile');
    if (ca !== undefined) {
      try {
        new X509Certificate(ca);
      } catch (err) {
        throw meshError('CONFIG_INVALID', `edge.tls.acme.caFile: not a PEM certificate (${config.caFile}): ${describe(err)}`, err);
      }
    }
    this.#store.prepare();
    this.#accountKey = await this.#store.accountKey(async () => newEcKey());
    const { certificate, reason } = this.#store.load({ directoryUrl: config.directoryUrl, domains: config.domains });
    if (certificate) {
      this.#certificate = certificate;
      this.#state = 'valid';
      log.info({ domains: config.domains, notAfter: certificate.notAfter.toISOString(), serialNumber: certificate.serialNumber }, 'edge certificate loaded from storage');
    } else log.info({ domains: config.domains, reason }, 'edge certificate to be ordered');
    this.#releaseOrigin = useOrigin(config.directoryUrl, ca);
  }

  /** Serves a stored certificate at once and schedules its renewal, or starts the first order. */
  start(): void {
    if (this.#certificate) {
      this.#options.onCertificate(this.#certificate);
      this.#emitCertificate(this.#certificate);
      this.#scheduleRenewal(this.#certificate);
    } else this.#attempt();
  }

  /** Orders a certificate now (admin POST /edge/renew); joins an order under way. */
  renew(): Promise<EdgeCertificate> {
    this.#cancelTimer?.();
    return this.#run();
  }

  stop(): void {
    this.#stopped = true;
    this.#cancelTimer?.();
    this.#releaseOrigin?.();
    this.#releaseOrigin = undefined;
  }

  #attempt(): void {
    this.#run().catch(() => undefined);
  }

  /** One order at a time: every caller gets the order under way. */
  #run(): Promise<EdgeCertificate> {
    this.#order ??= this.#orderOnce().finally(() => (this.#order = undefined));
    return this.#order;
  }

  async #orderOnce(): Promise<EdgeCertificate> {
    const { config, log, events } = this.#options;
    this.#nextAttempt = undefined;
    if (this.#state === 'valid') this.#state = 'renewing';
    try {
      const certificate = await this.#obtain();
      if (this.#stopped) return certificate;
      this.#store.save(certificate, { directoryUrl: config.directoryUrl, domains: config.domains });
      const recovered = this.#failures > 0;
      this.#certificate = certificate;
      this.#state = 'valid';
      this.#failures = 0;
      this.#lastError = undefined;
      this.#options.onCertificate(certificate);
      log.info({ domains: config.domains, notAfter: certificate.notAfter.toISOString(), serialNumber: certificate.serialNumber, ...(recovered ? { recovered: true } : {}) }, 'edge certificate obtained from ACME');
      events.emit('acme', { domains: config.domains, state: 'valid', notAfter: certificate.notAfter });
      this.#emitCertificate(certificate);
      this.#scheduleRenewal(certificate);
      return certificate;
    } catch (err) {
      if (this.#stopped) throw err;
      const error = describe(err);
      this.#failures++;
      const delay = retryDelay(this.#failures, config.retryMin, config.retryMax, this.#options.random);
      const previous = this.#state;
      const changed = previous !== 'failing' || error !== this.#lastError;
      this.#state = 'failing';
      this.#lastError = error;
      // Logged once per state change: a repeat of the same failure is only counted (metrics) and debug-logged.
      const fields = { domains: config.domains, directoryUrl: config.directoryUrl, error, failures: this.#failures, retryInMs: delay, ...(this.#certificate ? { servingUntil: this.#certificate.notAfter.toISOString() } : {}) };
      if (changed) log[this.#certificate ? 'warn' : 'error'](fields, this.#certificate ? 'edge certificate renewal failing; the current certificate is still served' : 'edge certificate cannot be obtained; edge TLS handshakes are refused until it is');
      else log.debug(fields, 'edge certificate order failed again');
      events.emit('acme', { domains: config.domains, state: 'failing', error, retryInMs: delay });
      this.#nextAttempt = new Date(Date.now() + delay);
      this.#schedule(delay);
      throw err;
    }
  }

  async #obtain(): Promise<EdgeCertificate> {
    const { config } = this.#options;
    const client = new acme.Client({ directoryUrl: config.directoryUrl, accountKey: this.#accountKey, backoffAttempts: 10, backoffMin: 250, backoffMax: 5000 });
    const keyPem = newEcKey();
    const [, csr] = await acme.crypto.createCsr({ commonName: config.domains[0]!, altNames: [...config.domains] }, keyPem);
    const chainPem = await client.auto({
      csr,
      ...(config.email === undefined ? {} : { email: config.email }),
      termsOfServiceAgreed: config.termsOfServiceAgreed,
      // The CA validates; a self-check from here would need the public DNS view of the domain.
      skipChallengeVerification: true,
      challengePriority: ['http-01'],
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        if (challenge.type !== 'http-01') throw new Error(`challenge ${challenge.type} is not offered by this edge (HTTP-01 only)`);
        this.#tokens.set(challenge.token, keyAuthorization);
      },
      challengeRemoveFn: async (_authz, challenge) => {
        this.#tokens.delete(challenge.token);
      },
    });
    const certificate = certificateFrom(keyPem, chainPem);
    const missing = config.domains.filter((d) => !certificate.names.includes(d));
    if (missing.length > 0) throw new Error(`the CA issued a certificate without ${missing.join(', ')}`);
    return certificate;
  }

  #emitCertificate(certificate: EdgeCertificate): void {
    this.#options.events.emit('certificate', { identity: `edge:${this.#options.config.domains[0]}`, notAfter: certificate.notAfter });
  }

  #scheduleRenewal(certificate: EdgeCertificate): void {
    const at = renewalTime({ notBefore: certificate.notBefore.getTime(), notAfter: certificate.notAfter.getTime() }, this.#options.config.renewBefore, this.#options.random);
    this.#nextAttempt = new Date(Math.max(at, Date.now()));
    this.#schedule(at - Date.now());
  }

  #schedule(delayMs: number): void {
    this.#cancelTimer?.();
    if (this.#stopped) return;
    this.#cancelTimer = setLongTimeout(() => this.#attempt(), delayMs);
  }
}
