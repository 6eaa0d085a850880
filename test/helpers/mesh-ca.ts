/** A throwaway CA in a temp dir, and hand-made client certificates for probing mTLS listeners. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { CertificateAuthority } from '../../certs/authority.ts';
import { generateKey } from '../../certs/keys.ts';
import { initCa, type InitOptions } from '../../certs/store.ts';
import { createCsr } from '../../certs/x509.ts';

export interface TestCa {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  /** A leaf for `service` from this CA, with its key, optionally with a custom validity. */
  leaf(service: string, options?: { namespace?: string; validity?: { notBefore: Date; notAfter: Date } }): { key: string; cert: string };
  cleanup(): Promise<void>;
}

/** Creates a CA (root + intermediate) in a fresh temp dir. */
export async function createTestCa(options: Partial<InitOptions> = {}): Promise<TestCa> {
  const parent = await mkdtemp(join(tmpdir(), 'meshlet-ca-'));
  const dir = join(parent, 'ca');
  await initCa({ dir, ...options });
  const ca = await CertificateAuthority.load(dir);
  return {
    dir,
    ca,
    leaf(service, leafOptions = {}) {
      const key = generateKey('ec-p256');
      const csrPem = createCsr({ commonName: service, publicKey: key.publicKey, privateKey: key.privateKey });
      const issued = ca.issueLeaf({ csrPem, namespace: leafOptions.namespace ?? 'default', service, ...(leafOptions.validity ? { validity: leafOptions.validity } : {}) });
      return { key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: issued.chainPem };
    },
    cleanup: () => rm(parent, { recursive: true, force: true }),
  };
}

/**
 * Opens a TLS connection to 127.0.0.1:`port` with the given client credentials (trusting `ca`) and
 * sends one HTTP request; resolves with the response text, or the error that ended the connection.
 */
export function tlsRequest(port: number, options: { ca: string; key?: string; cert?: string }): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, ca: options.ca, key: options.key, cert: options.cert, checkServerIdentity: () => undefined });
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (ok: boolean, text: string) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      resolve({ ok, text });
    };
    socket.setTimeout(5000, () => done(false, 'timeout'));
    socket.on('secureConnect', () => socket.write('GET /probe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => done(false, `${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`));
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString();
      done(text.startsWith('HTTP/1.1 '), text || 'closed without a response');
    });
  });
}
