/**
 * Wires mTLS into a sidecar before its listeners bind: obtains the first certificate (or fails the
 * start, naming the CA), puts mTLS transports on every meshed upstream, guards the inbound listener,
 * and keeps all of them current as certificates renew and the trust bundle changes.
 */
import { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket, TlsOptions } from 'node:tls';
import { parseSpiffeId, spiffeId } from '../../certs/spiffe.ts';
import { sendJson } from '../admin/server.ts';
import type { MeshletConfig } from '../config/schema.ts';
import { meshError } from '../errors.ts';
import type { Endpoint } from '../discovery/types.ts';
import type { HttpListener } from '../listeners/http-listener.ts';
import type { Http2Listener } from '../listeners/http2-listener.ts';
import type { TcpListener } from '../listeners/tcp-listener.ts';
import type { Sidecar } from '../sidecar.ts';
import type { CertificateSource } from './ca-source.ts';
import type { Credentials, TlsMaterial } from './credentials.ts';
import { authorizationLayer, peerIdentity, tcpAuthorizationGate, type InboundGuardOptions } from './inbound.ts';
import { AuthorizationPolicy } from './policy.ts';
import { mtlsTransport, secureContextOptions } from './transport.ts';

/** What the sidecar's inbound listener needs from the security module. */
export interface InboundSecurity {
  /** TLS options for the inbound listener: our chain, client certificates required and verified. */
  readonly tls: TlsOptions;
  /** Wraps the inbound TCP handler so only authorized callers reach the app. */
  gateTcp(handler: (socket: Socket) => void): (socket: Socket) => void;
  /** Hooks the bound inbound listener: identity check per connection, context swaps on renewal. */
  attachInbound(listener: HttpListener | Http2Listener | TcpListener): void;
  /** Puts mTLS transports on these upstreams' clusters (hot reload added or changed them). */
  secureUpstreams(names: ReadonlySet<string>): void;
  readonly credentials: Credentials;
}

/** Security settings naming upstreams that do not exist (checked at start and on hot reload). */
export function securityNameIssues(config: Pick<MeshletConfig, 'security' | 'upstreams'>): string[] {
  const { security } = config;
  if (!security.mtls) return [];
  const names = new Set(config.upstreams.map((u) => u.name));
  const problems: string[] = [];
  security.plaintextUpstreams.forEach((name, i) => {
    if (!names.has(name)) problems.push(`security.plaintextUpstreams[${i}]: no upstream is named "${name}"`);
  });
  for (const name of Object.keys(security.identities)) {
    if (!names.has(name)) problems.push(`security.identities.${name}: no upstream is named "${name}"`);
  }
  return problems;
}

/** Sets up mTLS when `security.mtls` is on; resolves undefined otherwise. Call before listeners bind. */
export async function installSecurity(sidecar: Sidecar): Promise<InboundSecurity | undefined> {
  const { security, service } = sidecar.config;
  if (!security.mtls) return undefined;
  const [problem] = securityNameIssues(sidecar.config);
  if (problem) throw meshError('CONFIG_INVALID', problem);
  const { events, log } = sidecar;
  // The CA and CSR code (node-forge) is loaded only when mTLS is on (idle memory, docs/performance.md).
  const [{ createCertificateSource }, { Credentials }] = await Promise.all([import('./ca-source.ts'), import('./credentials.ts')]);
  const source: CertificateSource = await createCertificateSource(security, { namespace: service.namespace, service: service.name });
  const credentials = new Credentials({
    source,
    namespace: service.namespace,
    service: service.name,
    trustDomain: security.trustDomain,
    leafTtlMs: security.leafTtl,
    bundleRefreshMs: security.bundleRefresh,
    events,
    log,
  });
  const first = await credentials.start();
  sidecar.beforeDrain.push(async () => credentials.stop());

  const plaintext = new Set(security.plaintextUpstreams);
  const applyTransports = (material: TlsMaterial, only?: ReadonlySet<string>) => {
    for (const upstream of sidecar.config.upstreams) {
      if (plaintext.has(upstream.name) || (only && !only.has(upstream.name))) continue;
      const cluster = sidecar.clusters.get(upstream.name)!;
      const trustDomain = material.identity.trustDomain;
      const configured = security.identities[upstream.name] ?? spiffeId({ trustDomain, namespace: service.namespace, service: cluster.service });
      // Discovery may name an endpoint's identity (e.g. Consul meta, for a service in another namespace).
      // It is registered by the peer itself, so it may only pick the namespace: same trust domain, same
      // service. Otherwise any instance could vouch for itself under another service's name. Config wins.
      const expectedIdentity = (endpoint: Endpoint) => {
        const named = endpoint.meta.identity === undefined ? undefined : parseSpiffeId(endpoint.meta.identity);
        const usable = security.identities[upstream.name] === undefined && named?.trustDomain === trustDomain && named.service === cluster.service;
        return usable ? spiffeId(named) : configured;
      };
      cluster.setTransport(mtlsTransport({ material, upstream: upstream.name, expectedIdentity, events }));
    }
  };
  applyTransports(first);

  const policy = new AuthorizationPolicy(security.authorization.rules, security.authorization.default);
  const guard: InboundGuardOptions = { local: () => credentials.material.identity, policy, events, log };
  if (sidecar.config.inbound.protocol !== 'tcp') sidecar.inboundLayers.unshift(authorizationLayer(guard));

  let inbound: HttpListener | Http2Listener | TcpListener | undefined;
  credentials.onChange((material) => {
    inbound?.setSecureContext(secureContextOptions(material));
    applyTransports(material);
  });

  sidecar.admin.route('GET', '/certs', (_req, res) => {
    const m = credentials.material;
    sendJson(res, 200, {
      identity: m.spiffeId,
      issuer: new X509Certificate(m.chainPem).issuer.replace(/\n/g, ', '),
      notAfter: m.notAfter.toISOString(),
      ca: source.description,
      trustBundleRoots: m.trustBundle.split('BEGIN CERTIFICATE').length - 1,
      plaintextUpstreams: [...plaintext],
    });
  });

  return {
    credentials,
    tls: { ...secureContextOptions(first), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
    gateTcp: (handler) => tcpAuthorizationGate(guard, handler),
    secureUpstreams: (names) => applyTransports(credentials.material, names),
    attachInbound(listener) {
      inbound = listener;
      const server = listener.server as TlsServer;
      server.on('tlsClientError', (err: Error, socket: Socket) => {
        events.emit('tlsHandshakeError', { side: 'inbound', peer: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, error: err.message });
      });
      // A certificate from our CA but without an identity of our trust domain is refused at once.
      server.on('secureConnection', (socket: TLSSocket) => {
        if (socket.destroyed || peerIdentity(socket, credentials.material.identity.trustDomain)) return;
        const san = socket.getPeerCertificate()?.subjectaltname ?? 'no SAN';
        events.emit('tlsHandshakeError', { side: 'inbound', peer: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, error: `peer certificate carries no SPIFFE ID of trust domain ${credentials.material.identity.trustDomain} (${san})` });
        log.warn({ peer: socket.remoteAddress, san }, 'inbound connection without a mesh identity refused');
        socket.destroy();
      });
    },
  };
}
