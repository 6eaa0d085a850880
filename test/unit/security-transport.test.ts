/**
 * The outbound mTLS transport on its own: real TLS 1.3 handshakes on loopback against a server with a
 * mesh certificate. Reconnects resume the session, and a peer that fails the identity check never
 * seeds the session cache.
 */
import { once } from 'node:events';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mtlsTransport } from '../../sidecar/security/transport.ts';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';
import type { TlsMaterial } from '../../sidecar/security/credentials.ts';
import { MeshEvents } from '../../sidecar/telemetry/events.ts';
import { createTestCa, type TestCa } from '../helpers/mesh-ca.ts';

describe('mTLS transport', () => {
  let ca: TestCa;
  let server: Server;
  let port: number;
  let material: TlsMaterial;

  beforeAll(async () => {
    ca = await createTestCa();
    const peer = ca.leaf('backend');
    server = createServer({ key: peer.key, cert: peer.cert, ca: ca.ca.trustBundle(), requestCert: true, rejectUnauthorized: true }, (socket) => {
      // Answer one message, then close: as a peer sidecar does, it has sent its session tickets by then.
      socket.once('data', () => socket.end('bye'));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
    const own = ca.leaf('frontend');
    const identity = { trustDomain: ca.ca.trustDomain, namespace: 'default', service: 'frontend' };
    material = { identity, spiffeId: '', keyPem: own.key, chainPem: own.cert, trustBundle: ca.ca.trustBundle(), notAfter: new Date(Date.now() + 3_600_000) };
  });
  afterAll(async () => {
    server.close();
    await ca.cleanup();
  });

  /** Connects once and reports whether the handshake resumed a session, or the error it failed with. */
  async function connectOnce(expected: string, transport: ReturnType<typeof mtlsTransport>): Promise<{ reused: boolean } | { error: string }> {
    const socket = transport.openSocket(makeEndpoint({ address: '127.0.0.1', port })) as TLSSocket;
    try {
      await once(socket, 'secureConnect');
      const reused = socket.isSessionReused();
      socket.write('hello');
      // TLS 1.3 tickets arrive after the handshake: read up to the peer's end so they are in.
      socket.resume();
      await once(socket, 'end');
      socket.end();
      await once(socket, 'close');
      return { reused };
    } catch (err) {
      socket.destroy();
      return { error: `${(err as Error).message} (expected ${expected})` };
    }
  }

  it('resumes the TLS session on reconnects to the same endpoint', async () => {
    const expected = `spiffe://${ca.ca.trustDomain}/ns/default/svc/backend`;
    const transport = mtlsTransport({ material, upstream: 'backend', expectedIdentity: () => expected, events: new MeshEvents() });
    expect(await connectOnce(expected, transport)).toEqual({ reused: false });
    expect(await connectOnce(expected, transport)).toEqual({ reused: true });
    expect(await connectOnce(expected, transport)).toEqual({ reused: true });
  });

  it('never resumes into a peer that failed the identity check, and keeps refusing it', async () => {
    const wrong = `spiffe://${ca.ca.trustDomain}/ns/default/svc/payments`;
    const transport = mtlsTransport({ material, upstream: 'payments', expectedIdentity: () => wrong, events: new MeshEvents() });
    for (let i = 0; i < 3; i++) {
      const result = await connectOnce(wrong, transport);
      expect(result).toHaveProperty('error');
      expect((result as { error: string }).error).toMatch(/presented spiffe:\/\/.*\/svc\/backend, expected/);
    }
  });
});
