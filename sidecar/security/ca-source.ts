/**
 * Where a sidecar's leaf certificate comes from: a CA directory on this machine, or the CA API of
 * `meshlet ca serve`. Either way the private key stays in the sidecar; only a CSR leaves it.
 */
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'undici';
import { CertificateAuthority } from '../../certs/authority.ts';
import { meshError } from '../errors.ts';
import type { SecurityConfig } from './config.ts';

export interface IssuedCredentials {
  readonly spiffeId: string;
  /** Leaf then intermediate, PEM. */
  readonly chainPem: string;
  readonly notAfter: Date;
  readonly trustBundle: string;
}

/** The sidecar's current key and chain, used to authenticate renewals. */
export interface CurrentCredentials {
  readonly keyPem: string;
  readonly chainPem: string;
  readonly notAfter: Date;
}

export interface CertificateSource {
  /** Names the CA in logs and errors. */
  readonly description: string;
  issue(csrPem: string, ttlMs: number, current: CurrentCredentials | undefined): Promise<IssuedCredentials>;
  trustBundle(): Promise<string>;
}

/** A CA directory readable by this process: the sidecar signs its own CSR (file access is the credential). */
export class LocalCaSource implements CertificateSource {
  readonly description: string;
  readonly #dir: string;
  readonly #identity: { namespace: string; service: string };
  #ca: CertificateAuthority | undefined;

  constructor(dir: string, identity: { namespace: string; service: string }) {
    this.#dir = dir;
    this.#identity = identity;
    this.description = `local CA in ${dir}`;
  }

  async #authority(): Promise<CertificateAuthority> {
    this.#ca ??= await CertificateAuthority.load(this.#dir);
    await this.#ca.refresh();
    return this.#ca;
  }

  async issue(csrPem: string, ttlMs: number): Promise<IssuedCredentials> {
    const ca = await this.#authority();
    return ca.issueLeaf({ csrPem, ...this.#identity, ttlMs });
  }

  async trustBundle(): Promise<string> {
    return (await this.#authority()).trustBundle();
  }
}

interface RemoteAnswer {
  readonly spiffeId: string;
  readonly certificateChain: string;
  readonly notAfter: string;
  readonly trustBundle: string;
}

/** The CA API: first certificate with the bootstrap token, renewals with the current certificate. */
export class RemoteCaSource implements CertificateSource {
  readonly description: string;
  readonly #url: string;
  readonly #token: string;
  readonly #configuredCa: string;
  /** Roots that may sign the CA API's certificate: the configured file plus the latest bundle. */
  #trusted: string;

  private constructor(url: string, token: string, caPem: string) {
    this.#url = url.replace(/\/+$/, '');
    this.#token = token;
    this.#configuredCa = caPem;
    this.#trusted = caPem;
    this.description = `CA API ${this.#url}`;
  }

  /** Reads the token and CA files named in config; a missing file is an error naming it. */
  static async fromConfig(ca: { url: string; token?: string | undefined; tokenFile?: string | undefined; caFile: string }): Promise<RemoteCaSource> {
    const read = async (path: string, field: string) => {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        throw meshError('CONFIG_INVALID', `security.ca.${field}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    };
    const token = ca.token ?? (await read(ca.tokenFile!, 'tokenFile')).trim();
    return new RemoteCaSource(ca.url, token, await read(ca.caFile, 'caFile'));
  }

  async issue(csrPem: string, ttlMs: number, current: CurrentCredentials | undefined): Promise<IssuedCredentials> {
    const body = JSON.stringify({ csr: csrPem, ttlMs });
    let renewError: Error | undefined;
    if (current && current.notAfter.getTime() > Date.now()) {
      try {
        return this.#accept(await this.#call('POST', '/v1/certificates/renew', body, {}, current));
      } catch (err) {
        // The CA may have been rotated and retired past our chain: the token still proves who we are.
        renewError = err as Error;
      }
    }
    try {
      return this.#accept(await this.#call('POST', '/v1/certificates', body, { authorization: `Bearer ${this.#token}` }));
    } catch (err) {
      if (!renewError) throw err;
      throw meshError('TLS_NO_CERTIFICATE', `${(err as Error).message}; renewal with the current certificate failed first: ${renewError.message}`, err);
    }
  }

  async trustBundle(): Promise<string> {
    const answer = (await this.#call('GET', '/v1/trust-bundle')) as { trustBundle: string };
    this.#trusted = answer.trustBundle + this.#configuredCa;
    return answer.trustBundle;
  }

  #accept(raw: unknown): IssuedCredentials {
    const answer = raw as RemoteAnswer;
    const notAfter = new Date(answer.notAfter);
    if (typeof answer.certificateChain !== 'string' || typeof answer.trustBundle !== 'string' || Number.isNaN(notAfter.getTime())) {
      throw meshError('TLS_NO_CERTIFICATE', `${this.description} answered without a certificate chain, trust bundle and notAfter`);
    }
    this.#trusted = answer.trustBundle + this.#configuredCa;
    return { spiffeId: answer.spiffeId, chainPem: answer.certificateChain, notAfter, trustBundle: answer.trustBundle };
  }

  async #call(method: 'GET' | 'POST', path: string, body?: string, headers: Record<string, string> = {}, client?: CurrentCredentials): Promise<unknown> {
    const dispatcher = new Agent({ connect: { ca: this.#trusted, ...(client ? { cert: client.chainPem, key: client.keyPem } : {}) } });
    try {
      const res = await request(`${this.#url}${path}`, {
        method,
        dispatcher,
        headers: { 'content-type': 'application/json', ...headers },
        ...(body === undefined ? {} : { body }),
        headersTimeout: 10_000,
        bodyTimeout: 10_000,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) {
        let message = text.slice(0, 300);
        try {
          message = (JSON.parse(text) as { message?: string }).message ?? message;
        } catch {
          // not JSON: keep the raw text
        }
        throw meshError('TLS_NO_CERTIFICATE', `${this.description} refused ${method} ${path} with ${res.statusCode}: ${message}`);
      }
      return JSON.parse(text) as unknown;
    } catch (err) {
      if ((err as { code?: string }).code === 'MESH_ERR_TLS_NO_CERTIFICATE') throw err;
      const e = err as { message?: string; code?: string; cause?: { code?: string; message?: string } };
      const detail = e.cause?.message ?? e.message ?? String(err);
      throw meshError('TLS_NO_CERTIFICATE', `cannot reach ${this.description}: ${detail}${e.cause?.code ?? e.code ? ` (${e.cause?.code ?? e.code})` : ''}`, err);
    } finally {
      void dispatcher.close();
    }
  }
}

/** Builds the source named by `security.ca`. */
export async function createCertificateSource(security: SecurityConfig, identity: { namespace: string; service: string }): Promise<CertificateSource> {
  const ca = security.ca!;
  if ('dir' in ca) return new LocalCaSource(ca.dir, identity);
  return RemoteCaSource.fromConfig(ca);
}
