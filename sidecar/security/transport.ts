/**
 * Outbound mTLS: connections to a peer sidecar present our leaf, verify the peer's chain against the
 * trust bundle, and require the peer's SPIFFE ID to be the one expected for the upstream (a valid mesh
 * certificate of another service is not good enough). There is no plaintext fallback.
 */
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { buildConnector } from 'undici';
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
  readonly connectTimeoutMs: number;
  readonly events: MeshEvents;
}

/** A ClusterTransport that speaks mTLS to peer sidecars; built anew on every credential change. */
export function mtlsTransport(options: MtlsTransportOptions): ClusterTransport {
  const secureContext: SecureContext = createSecureContext(secureContextOptions(options.material));
  const reportFailure = (endpoint: string, err: unknown) => {
    if (isTlsFailure(err)) options.events.emit('tlsHandshakeError', { side: 'outbound', peer: `${options.upstream}@${endpoint}`, error: (err as Error).message });
  };
  return {
    scheme: 'https',
    connectOptions: (endpoint: Endpoint) => {
      const checkServerIdentity = peerIdentityCheck(options.expectedIdentity(endpoint), options.upstream);
      const connector = buildConnector({ secureContext, checkServerIdentity, rejectUnauthorized: true, timeout: options.connectTimeoutMs, minVersion: 'TLSv1.2' } as buildConnector.BuildOptions);
      return (opts, callback) =>
        connector(opts, (err, socket) => {
          if (err) reportFailure(endpoint.key, err);
          // undici's callback is typed as two overloads; forward exactly what we got.
          (callback as (e: Error | null, s: typeof socket | null) => void)(err, socket);
        });
    },
    openSocket: (endpoint: Endpoint, alpn?: readonly string[]) => {
      const checkServerIdentity = peerIdentityCheck(options.expectedIdentity(endpoint), options.upstream);
      const socket: TLSSocket = tlsConnect({
        host: endpoint.address,
        port: endpoint.port,
        secureContext,
        checkServerIdentity,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        ...(alpn ? { ALPNProtocols: [...alpn] } : {}),
        noDelay: true,
        // Node passes this on to the TLSSocket (a TCP client's half-close must travel); the types omit it.
        allowHalfOpen: true,
      } as ConnectionOptions);
      socket.once('error', (err) => {
        if (!socket.authorized) reportFailure(endpoint.key, err);
      });
      return socket;
    },
  };
}
