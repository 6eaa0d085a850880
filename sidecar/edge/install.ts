/**
 * The edge: an HTTPS listener for clients outside the mesh that hands each request to the `edge.to`
 * upstream's current handler (the one its own listener serves: routes, resilience, telemetry), plus,
 * for ACME, a plain HTTP listener answering HTTP-01 challenges and redirecting everything else to https.
 *
 * Until a certificate exists every TLS handshake is refused (never a plaintext fallback); the rest of
 * the sidecar serves meanwhile. New certificates are swapped in with `setSecureContext`: the listener
 * keeps running and established connections keep theirs.
 */
import { Buffer } from 'node:buffer';
import type { WireReply } from '../protocols/wire/reply.ts';
import type { WireRequest } from '../protocols/wire/server-connection.ts';
import type { Duplex } from 'node:stream';
import type { SecureContextOptions, TlsOptions } from 'node:tls';
import { sendJson } from '../admin/server.ts';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../config/schema.ts';
import { meshError } from '../errors.ts';
import { HttpListener } from '../listeners/http-listener.ts';
import { respondWithError } from '../protocols/respond.ts';
import { writeRawError, type HttpHandler, type UpgradeHandler } from '../protocols/upgrade.ts';
import { hostOf } from '../routing/router.ts';
import type { Sidecar } from '../sidecar.ts';
import type { AcmeManager } from './acme.ts';
import { isAcme, type EdgeConfig } from './config.ts';
import { loadCertificateFiles, type EdgeCertificate } from './store.ts';

export const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';
/** Client-sent forwarding headers are not trusted at the edge: the edge states its own. */
const UNTRUSTED_FORWARDING = ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded'];

export interface Edge {
  readonly listener: HttpListener;
  /** The HTTP-01 challenge listener (ACME only). */
  readonly challenge: HttpListener | undefined;
  readonly port: number;
  readonly challengePort: number | undefined;
  /** The certificate served now (undefined: none yet, handshakes refused). */
  readonly certificate: EdgeCertificate | undefined;
  close(drainMs: number): Promise<void>;
}

const BASE_TLS: TlsOptions = { minVersion: 'TLSv1.2' };

function contextOf(certificate: EdgeCertificate): SecureContextOptions {
  return { ...BASE_TLS, key: certificate.keyPem, cert: certificate.chainPem };
}

/** Binds a listener; the error names the config field of its port. */
async function bind(listener: HttpListener, port: number, address: string, field: string): Promise<number> {
  try {
    return await listener.listen(port, address);
  } catch (err) {
    throw meshError('CONFIG_INVALID', `${field}: ${(err as Error).message}`, err);
  }
}

/** The handler of the `to` upstream's listener right now (it follows hot reloads of that upstream). */
function upstreamHandler(sidecar: Sidecar, to: string): HttpHandler | undefined {
  const found = sidecar.listeners().find((l) => l.name === `outbound:${to}`)?.listener;
  return found instanceof HttpListener ? found.handler : undefined;
}

function notServing(to: string) {
  return meshError('NO_HEALTHY_ENDPOINT', `edge: upstream "${to}" is not serving`);
}

/** Edge requests (and upgrades) go to the upstream's handler, with forwarding headers set by the edge. */
function edgeHandler(sidecar: Sidecar, to: string): HttpHandler & { upgrade: UpgradeHandler } {
  const prepare = (req: WireRequest) => {
    for (const name of UNTRUSTED_FORWARDING) delete req.headers[name];
    req.headers['x-forwarded-proto'] = 'https';
  };
  const handler = (req: WireRequest, res: WireReply) => {
    prepare(req);
    const target = upstreamHandler(sidecar, to);
    if (target) return target(req, res);
    req.body?.resume();
    respondWithError(res, notServing(to));
  };
  const upgrade: UpgradeHandler = (req: WireRequest, socket: Duplex, head: Buffer) => {
    prepare(req);
    const target = upstreamHandler(sidecar, to);
    if (target?.upgrade) return target.upgrade(req, socket, head);
    writeRawError(socket, notServing(to));
  };
  return Object.assign(handler, { upgrade });
}

/**
 * HTTP-01 answers; every other request for one of the certificate's domains is redirected to the same
 * URL over https (308 keeps the method). Other Host names get 404: no open redirect.
 */
function challengeHandler(manager: AcmeManager, domains: readonly string[], edgePort: () => number): HttpHandler {
  return (req, res) => {
    const url = req.url ?? '/';
    req.body?.resume();
    if (url.startsWith(CHALLENGE_PREFIX)) {
      const answer = (req.method === 'GET' || req.method === 'HEAD') && manager.challengeResponse(url.slice(CHALLENGE_PREFIX.length));
      if (answer) {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(answer) });
        res.end(req.method === 'HEAD' ? undefined : answer);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('unknown ACME challenge token\n');
      }
      return;
    }
    const host = hostOf(req.headers.host);
    if (!domains.includes(host) || !url.startsWith('/')) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('this listener answers ACME challenges and redirects the edge domains to https\n');
      return;
    }
    const port = edgePort();
    res.writeHead(308, { location: `https://${host}${port === 443 ? '' : `:${port}`}${url}`, 'content-length': 0 });
    res.end();
  };
}

/**
 * Starts the edge when `edge` is configured: loads the static certificate (errors name the field) or
 * prepares ACME (storage, account key, stored certificate), binds the listeners, and, for ACME, orders
 * the certificate in the background. Resolves undefined without `edge`.
 */
export async function startEdge(sidecar: Sidecar): Promise<Edge | undefined> {
  const conf: EdgeConfig | undefined = sidecar.config.edge;
  if (!conf) return undefined;
  const { log, events } = sidecar;
  let current: EdgeCertificate | undefined;
  let listener: HttpListener | undefined;
  const serve = (certificate: EdgeCertificate) => {
    current = certificate;
    listener?.setSecureContext(contextOf(certificate));
  };

  let manager: AcmeManager | undefined;
  let reload: () => Promise<EdgeCertificate>;
  if (isAcme(conf.tls)) {
    // acme-client (with axios and @peculiar/x509) is loaded only when an ACME edge is configured.
    const { AcmeManager } = await import('./acme.ts');
    manager = new AcmeManager({ config: conf.tls.acme, events, log, onCertificate: serve });
    await manager.prepare();
    current = manager.certificate;
    const m = manager;
    reload = () => m.renew();
  } else {
    // Both present: the schema refuses one without the other.
    const certFile = conf.tls.certFile!;
    const keyFile = conf.tls.keyFile!;
    current = loadCertificateFiles(certFile, keyFile);
    const identity = `edge:${current.names[0] ?? 'static'}`;
    events.emit('certificate', { identity, notAfter: current.notAfter });
    reload = async () => {
      const next = loadCertificateFiles(certFile, keyFile);
      serve(next);
      events.emit('certificate', { identity, notAfter: next.notAfter });
      log.info({ notAfter: next.notAfter.toISOString(), serialNumber: next.serialNumber }, 'edge certificate re-read from files');
      return next;
    };
  }

  const tls: TlsOptions = {
    ...(current ? contextOf(current) : BASE_TLS),
    // No certificate yet: refuse the handshake with a clear reason (clients without SNI fail anyway: no certificate at all).
    SNICallback: (_servername, done) => (current ? done(null, undefined) : done(new Error('edge has no certificate yet (ACME order pending); refusing TLS'))),
  };
  listener = new HttpListener(
    { name: 'edge', maxRequestHeadBytes: sidecar.config.limits.maxRequestHeadBytes, requestHeadTimeoutMs: sidecar.config.limits.requestHeadTimeout, idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS, tls, log },
    edgeHandler(sidecar, conf.to),
  );
  const edgeListener = listener;
  let challenge: HttpListener | undefined;
  let port = 0;
  let challengePort: number | undefined;
  try {
    port = await bind(edgeListener, conf.port, conf.address, 'edge.port');
    if (manager && isAcme(conf.tls)) {
      const { address, port: wanted } = conf.tls.acme.challenge;
      challenge = new HttpListener({ name: 'edge-challenge', maxRequestHeadBytes: 8192, requestHeadTimeoutMs: 10_000, idleTimeoutMs: 30_000, log }, challengeHandler(manager, conf.tls.acme.domains, () => port));
      challengePort = await bind(challenge, wanted, address, 'edge.tls.acme.challenge.port');
    }
  } catch (err) {
    manager?.stop();
    await Promise.all([edgeListener.close(0), challenge?.close(0)]);
    throw err;
  }
  manager?.start();

  sidecar.admin.route('GET', '/edge', (_req, res) => {
    const base = { port, to: conf.to, serving: current !== undefined };
    if (manager) return sendJson(res, 200, { ...base, challengePort, ...manager.status() });
    sendJson(res, 200, { ...base, mode: 'files', ...(current ? { names: current.names, serialNumber: current.serialNumber, notAfter: current.notAfter.toISOString() } : {}) });
  });
  sidecar.admin.route('POST', '/edge/renew', async (_req, res) => {
    try {
      const next = await reload();
      sendJson(res, 200, { renewed: true, serialNumber: next.serialNumber, notAfter: next.notAfter.toISOString() });
    } catch (err) {
      sendJson(res, 502, { renewed: false, error: (err as Error).message });
    }
  });

  log.info({ port, challengePort, to: conf.to, mode: manager ? 'acme' : 'files', serving: current !== undefined }, 'edge listening');
  return {
    listener: edgeListener,
    challenge,
    port,
    challengePort,
    get certificate() {
      return current;
    },
    async close(drainMs: number) {
      manager?.stop();
      await Promise.all([edgeListener.close(drainMs), challenge?.close(drainMs)]);
    },
  };
}
