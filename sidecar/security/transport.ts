/**
 * Outbound mTLS: connections to a peer sidecar present our leaf, verify the peer's chain against the
 * trust bundle, and require the peer's SPIFFE ID to be the one expected for the upstream (a valid mesh
 * certificate of another service is not good enough). There is no plaintext fallback.
 */
import { Buffer } from 'node:buffer';
import type { OnReadOpts } from 'node:net';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { uriSans } from '../../certs/spiffe.ts';
import type { ClusterTransport } from '../cluster/cluster.ts';
import type { Endpoint } from '../discovery/types.ts';
import { MeshletError, meshError } from '../errors.ts';
import type { MeshEvents } from '../telemetry/events.ts';
import type { TlsMaterial } from './credentials.ts';

/** Builds the TLS context a sidecar uses both to serve and to call: our chain, our key, the roots. */
export function secureContextOptions(material: TlsMaterial): { key: string; cert: string; ca: string } {
  return { key: material.keyPem, cert: material.chainPem, ca: material.trustBundle };
}

/** The check Node runs after the chain verified: the peer must carry exactly `expected`. */
export function peerIdentityCheck(expected: string, upstream: string): (host: string, cert: PeerCertificate) => Error | undefined {
  return (host, cert) => {
    const ids = uriSans(cert.subjectaltname).filter((u) => u.startsWith('spiffe://'));
    if (ids.length === 1 && ids[0] === expected) return undefined;
    const got = ids.length === 0 ? 'no SPIFFE ID' : ids.join(', ');
    return meshError('TLS_PEER_IDENTITY', `peer ${host} of upstream "${upstream}" presented ${got}, expected ${expected}`);
  };
}

function isTlsFailure(err: unknown): boolean {
  if (err instanceof MeshletError) return err.code === 'MESH_ERR_TLS_PEER_IDENTITY';
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT') || /alert|certificate|handshake/i.test((err as Error).message ?? '');
}

export interface MtlsTransportOptions {
  readonly material: TlsMaterial;
  readonly upstream: string;
  /** The SPIFFE ID an endpoint must present. */
  readonly expectedIdentity: (endpoint: Endpoint) => string;
  readonly events: MeshEvents;
}

/** A ClusterTransport that speaks mTLS to peer sidecars; built anew on every credential change. */
export function mtlsTransport(options: MtlsTransportOptions): ClusterTransport {
  const secureContext: SecureContext = createSecureContext(secureContextOptions(options.material));
  const reportFailure = (endpoint: string, err: unknown) => {
    if (isTlsFailure(err)) options.events.emit('tlsHandshakeError', { side: 'outbound', peer: `${options.upstream}@${endpoint}`, error: (err as Error).message });
  };
  // TLS 1.3 session tickets per endpoint and ALPN set: reconnects resume instead of a full handshake.
  const sessions = new Map<string, Buffer>();
  return {
    scheme: 'https',
    openSocket: (endpoint: Endpoint, alpn?: readonly string[], onread?: OnReadOpts) => {
      const checkServerIdentity = peerIdentityCheck(options.expectedIdentity(endpoint), options.upstream);
      const sessionKey = alpn ? `${endpoint.key}|${alpn.join(',')}` : endpoint.key;
      const session = sessions.get(sessionKey);
      const socket: TLSSocket = tlsConnect({
        host: endpoint.address,
        port: endpoint.port,
        secureContext,
        checkServerIdentity,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        ...(alpn ? { ALPNProtocols: [...alpn] } : {}),
        ...(session ? { session } : {}),
        noDelay: true,
        ...(onread ? { onread } : {}),
        // Node passes this on to the TLSSocket (a TCP client's half-close must travel); the types omit it.
        allowHalfOpen: true,
      } as ConnectionOptions);
      socket.once('error', (err) => {
        if (!socket.authorized) reportFailure(endpoint.key, err);
      });
      // Only tickets from a connection whose peer passed verification and the identity check are kept.
      socket.on('session', (ticket: Buffer) => {
        if (!socket.authorized) return;
        // Endpoints come and go with discovery: bound the cache rather than track each one's lifetime.
        if (sessions.size >= 4096 && !sessions.has(sessionKey)) sessions.clear();
        sessions.set(sessionKey, ticket);
      });
      return socket;
    },
  };
}
