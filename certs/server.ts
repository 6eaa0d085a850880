/**
 * `meshlet ca serve`: the CA's HTTPS API.
 *
 *   POST /v1/certificates        Authorization: Bearer <bootstrap token>, {"csr": PEM, "ttlMs"?: n}
 *   POST /v1/certificates/renew  client certificate (the current leaf) instead of a token
 *   GET  /v1/trust-bundle        every trusted root (public)
 *
 * Refusals are 4xx with the same JSON body as the proxy's errors and nothing is signed.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { MeshletError, meshError } from '../sidecar/errors.ts';
import { listen } from '../sidecar/listeners/listen.ts';
import type { Logger } from '../sidecar/telemetry/logger.ts';
import { CertificateAuthority } from './authority.ts';
import { identityFromSan } from './spiffe.ts';
import { lookupToken } from './tokens.ts';

export const CA_SERVER_CERT_TTL_MS = 24 * 3_600_000;
const MAX_BODY_BYTES = 64 * 1024;

export interface CaServerOptions {
  readonly dir: string;
  /** Names the API is reached by, put in its serving certificate (default localhost, 127.0.0.1, ::1). */
  readonly dnsNames?: string[];
  readonly ipAddresses?: string[];
  readonly log: Logger;
}

export class CaServer {
  readonly #options: CaServerOptions;
  readonly #ca: CertificateAuthority;
  readonly server: Server;
  #renewTimer: NodeJS.Timeout | undefined;

  private constructor(options: CaServerOptions, ca: CertificateAuthority) {
    this.#options = options;
    this.#ca = ca;
    // Client certificates are optional (renewal uses them, first issuance uses a token); verified against the bundle.
    this.server = createServer({ ...this.#secureOptions(), requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' }, (req, res) => void this.#handle(req, res));
    this.server.on('tlsClientError', (err) => options.log.debug({ err: err.message }, 'CA API TLS handshake failed'));
  }

  static async create(options: CaServerOptions): Promise<CaServer> {
    return new CaServer(options, await CertificateAuthority.load(options.dir));
  }

  #secureOptions(): { key: string; cert: string; ca: string } {
    const issued = this.#ca.issueServerCertificate(
      { dnsNames: this.#options.dnsNames ?? ['localhost'], ipAddresses: this.#options.ipAddresses ?? ['127.0.0.1', '::1'] },
      CA_SERVER_CERT_TTL_MS,
    );
    clearTimeout(this.#renewTimer);
    // Re-issue the serving certificate at 70% of its life; unref'd so it never holds the process open.
    this.#renewTimer = setTimeout(() => this.#reloadContext(), Math.max(1000, (issued.notAfter.getTime() - Date.now()) * 0.7)).unref();
    return { key: issued.keyPem, cert: issued.chainPem, ca: this.#ca.trustBundle() };
  }

  #reloadContext(): void {
    this.server.setSecureContext(this.#secureOptions());
  }

  listen(port: number, address: string): Promise<number> {
    return listen(this.server, port, address);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'https://ca').pathname;
    try {
      // A rotation or retirement by `meshlet ca rotate` changes what we sign with and whom we trust.
      if (await this.#ca.refresh()) this.#reloadContext();
      if (req.method === 'GET' && path === '/v1/trust-bundle') return send(res, 200, { trustDomain: this.#ca.trustDomain, trustBundle: this.#ca.trustBundle() });
      if (req.method === 'POST' && path === '/v1/certificates') return send(res, 200, await this.#issueWithToken(req));
      if (req.method === 'POST' && path === '/v1/certificates/renew') return send(res, 200, await this.#renew(req));
      send(res, 404, { error: 'not_found', message: `no CA API route ${req.method} ${path}` });
    } catch (err) {
      const error = err instanceof MeshletError ? err : meshError('INTERNAL', `CA API failed: ${(err as Error).message}`, err);
      if (error.status >= 500) this.#options.log.error({ err }, 'CA API request failed');
      else this.#options.log.warn({ path, peer: req.socket.remoteAddress, code: error.code, reason: error.message }, 'CA API request refused');
      send(res, error.status, { error: error.reason, code: error.code, message: error.message });
    }
  }

  async #issueWithToken(req: IncomingMessage): Promise<unknown> {
    const header = req.headers.authorization ?? '';
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    if (!token) throw meshError('CA_BAD_TOKEN', 'missing "Authorization: Bearer <token>" header (create one with: meshlet ca token create)');
    const body = await readJson(req);
    const record = await lookupToken(this.#options.dir, token);
    if (!record) throw meshError('CA_BAD_TOKEN', 'unknown bootstrap token');
    return this.#sign(body, record.namespace, record.service);
  }

  async #renew(req: IncomingMessage): Promise<unknown> {
    const socket = req.socket as TLSSocket;
    const body = await readJson(req);
    if (!socket.authorized) {
      throw meshError('CA_BAD_TOKEN', `renewal needs a valid client certificate from this CA${socket.authorizationError ? ` (${String(socket.authorizationError)})` : ''}`);
    }
    const identity = identityFromSan(socket.getPeerCertificate().subjectaltname);
    if (!identity || identity.trustDomain !== this.#ca.trustDomain) throw meshError('CA_FORBIDDEN_IDENTITY', `client certificate carries no SPIFFE ID of trust domain ${this.#ca.trustDomain}`);
    return this.#sign(body, identity.namespace, identity.service);
  }

  #sign(body: Record<string, unknown>, namespace: string, service: string): unknown {
    if (typeof body.csr !== 'string') throw meshError('CA_BAD_CSR', 'request body must be JSON with a "csr" field holding a PEM CSR');
    const ttlMs = body.ttlMs === undefined ? undefined : Number(body.ttlMs);
    if (ttlMs !== undefined && (!Number.isFinite(ttlMs) || ttlMs < 1000)) throw meshError('CA_BAD_CSR', `"ttlMs" must be a number of milliseconds >= 1000, got ${JSON.stringify(body.ttlMs)}`);
    const leaf = this.#ca.issueLeaf({ csrPem: body.csr, namespace, service, ...(ttlMs !== undefined ? { ttlMs } : {}) });
    this.#options.log.info({ spiffeId: leaf.spiffeId, notAfter: leaf.notAfter.toISOString() }, 'issued leaf certificate');
    return { spiffeId: leaf.spiffeId, certificateChain: leaf.chainPem, notAfter: leaf.notAfter.toISOString(), trustBundle: leaf.trustBundle };
  }

  async close(): Promise<void> {
    clearTimeout(this.#renewTimer);
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw meshError('CA_BAD_CSR', `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Record<string, unknown>;
  } catch {
    // fall through to the error below
  }
  throw meshError('CA_BAD_CSR', 'request body must be a JSON object like {"csr": "-----BEGIN CERTIFICATE REQUEST-----..."}');
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}
