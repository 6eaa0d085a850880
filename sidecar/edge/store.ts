/**
 * The edge's certificate material on disk and in memory: files read with errors naming their config
 * field, private keys written 0600 (atomically, so a crash never leaves a key without its certificate),
 * and the checks a served certificate must pass (key matches, names covered, not expired).
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { meshError } from '../errors.ts';

/** A certificate the edge can serve. */
export interface EdgeCertificate {
  readonly keyPem: string;
  /** Leaf first, then intermediates. */
  readonly chainPem: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly serialNumber: string;
  /** DNS names of the leaf. */
  readonly names: readonly string[];
}

export const ACCOUNT_KEY_FILE = 'account.key.pem';
export const CERT_KEY_FILE = 'certificate.key.pem';
export const CERT_FILE = 'certificate.pem';
export const CERT_META_FILE = 'certificate.json';

function dnsNames(leaf: X509Certificate): string[] {
  return (leaf.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice(4).toLowerCase());
}

/**
 * Checks a key and chain belong together and builds the certificate; throws a plain Error whose message
 * says what is wrong (the caller adds the field).
 */
export function certificateFrom(keyPem: string, chainPem: string, now = Date.now()): EdgeCertificate {
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chainPem);
  } catch (err) {
    throw new Error(`not a PEM certificate (${(err as Error).message})`);
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new Error(`not a PEM private key (${(err as Error).message})`, { cause: 'key' });
  }
  if (!leaf.checkPrivateKey(key)) throw new Error('the private key does not belong to the certificate', { cause: 'mismatch' });
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now) throw new Error(`the certificate expired on ${notAfter.toISOString()}`);
  return { keyPem, chainPem, notBefore: new Date(leaf.validFrom), notAfter, serialNumber: leaf.serialNumber, names: dnsNames(leaf) };
}

/** Reads a file named by a config field; the error names the field and the file. */
export function readField(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw meshError('CONFIG_INVALID', `${field}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  }
}

/** Loads `certFile` + `keyFile` (static edge TLS); errors name `edge.tls.certFile` or `edge.tls.keyFile`. */
export function loadCertificateFiles(certFile: string, keyFile: string): EdgeCertificate {
  const chainPem = readField(certFile, 'edge.tls.certFile');
  const keyPem = readField(keyFile, 'edge.tls.keyFile');
  try {
    return certificateFrom(keyPem, chainPem);
  } catch (err) {
    const cause = (err as Error).cause;
    const field = cause === 'key' || cause === 'mismatch' ? `edge.tls.keyFile` : 'edge.tls.certFile';
    const file = field === 'edge.tls.keyFile' ? keyFile : certFile;
    throw meshError('CONFIG_INVALID', `${field}: ${(err as Error).message} (${file})`, err);
  }
}

/** Writes a file readable by its owner only, replacing any previous one atomically. */
export function writePrivate(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** What a stored certificate was ordered for: reused only for the same CA and the same names. */
export interface StoredMeta {
  readonly directoryUrl: string;
  readonly domains: readonly string[];
}

/** The ACME storage directory: account key, certificate key, certificate and what it was ordered for. */
export class AcmeStore {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates the directory (0700) when missing; the error names `edge.tls.acme.storageDir`. */
  prepare(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const probe = join(this.dir, `.write-test.${process.pid}`);
      writePrivate(probe, '');
      renameSync(probe, join(this.dir, '.write-test'));
    } catch (err) {
      throw meshError('CONFIG_INVALID', `edge.tls.acme.storageDir: cannot use ${this.dir} for keys and certificates: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
    }
  }

  /** The account key PEM, made by `create` and stored 0600 the first time. */
  async accountKey(create: () => Promise<string>): Promise<string> {
    const path = join(this.dir, ACCOUNT_KEY_FILE);
    const existing = readOptional(path);
    if (existing !== undefined) {
      try {
        createPrivateKey(existing);
        return existing;
      } catch (err) {
        throw meshError('CONFIG_INVALID', `edge.tls.acme.storageDir: ${path} is not a PEM private key; remove it to open a new ACME account (${(err as Error).message})`, err);
      }
    }
    const pem = await create();
    writePrivate(path, pem);
    return pem;
  }

  /**
   * The stored certificate when it was ordered from `meta.directoryUrl` for exactly `meta.domains`, its key
   * matches and it has not expired; otherwise undefined and why (for the log).
   */
  load(meta: StoredMeta): { certificate?: EdgeCertificate; reason?: string } {
    const chainPem = readOptional(join(this.dir, CERT_FILE));
    const keyPem = readOptional(join(this.dir, CERT_KEY_FILE));
    const metaText = readOptional(join(this.dir, CERT_META_FILE));
    if (chainPem === undefined || keyPem === undefined || metaText === undefined) return { reason: 'no stored certificate' };
    let stored: StoredMeta;
    try {
      stored = JSON.parse(metaText) as StoredMeta;
    } catch {
      return { reason: `${CERT_META_FILE} is not JSON` };
    }
    if (stored.directoryUrl !== meta.directoryUrl) return { reason: `the stored certificate is from another ACME directory (${stored.directoryUrl})` };
    if (!sameNames(stored.domains, meta.domains)) return { reason: `the stored certificate is for other domains (${stored.domains.join(', ')})` };
    try {
      return { certificate: certificateFrom(keyPem, chainPem) };
    } catch (err) {
      return { reason: `the stored certificate is unusable: ${(err as Error).message}` };
    }
  }

  /** Stores a new certificate: key first, then chain, then what it is for (each replaced atomically, 0600). */
  save(certificate: EdgeCertificate, meta: StoredMeta): void {
    writePrivate(join(this.dir, CERT_KEY_FILE), certificate.keyPem);
    writePrivate(join(this.dir, CERT_FILE), certificate.chainPem);
    writePrivate(join(this.dir, CERT_META_FILE), JSON.stringify({ directoryUrl: meta.directoryUrl, domains: meta.domains, notAfter: certificate.notAfter.toISOString() }));
  }
}

export function sameNames(a: readonly string[], b: readonly string[]): boolean {
  const x = [...new Set(a.map((n) => n.toLowerCase()))].sort();
  const y = [...new Set(b.map((n) => n.toLowerCase()))].sort();
  return x.length === y.length && x.every((n, i) => n === y[i]);
}
