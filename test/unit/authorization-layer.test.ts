import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Identity } from '../../certs/spiffe.ts';
import type { ProxyExchange, UpstreamResponse } from '../../sidecar/protocols/exchange.ts';
import { authorizationLayer, CALLER_NOTE } from '../../sidecar/security/inbound.ts';
import { AuthorizationPolicy } from '../../sidecar/security/policy.ts';
import { MeshEvents } from '../../sidecar/telemetry/events.ts';
import { silentLogger } from '../../sidecar/telemetry/logger.ts';

/** A verified mTLS socket as the layer sees it: only what peerIdentity reads. */
function tlsSocket(spiffe: string): Socket {
  return { authorized: true, destroyed: false, getPeerCertificate: () => ({ subjectaltname: `URI:${spiffe}` }) } as unknown as Socket;
}

function exchangeOn(socket: Socket): ProxyExchange {
  return { req: { socket }, notes: new Map() } as unknown as ProxyExchange;
}

const RESPONSE = { statusCode: 200 } as UpstreamResponse;

function layer(policy: AuthorizationPolicy, local: () => Identity) {
  const events = new MeshEvents();
  const denied: string[] = [];
  events.on('authorizationDenied', (e) => denied.push(e.source));
  let forwarded = 0;
  const forward = authorizationLayer({ local, policy, events, log: silentLogger() })(async () => {
    forwarded++;
    return RESPONSE;
  });
  return { forward, denied, forwarded: () => forwarded };
}

const api: Identity = { trustDomain: 'mesh.test', namespace: 'default', service: 'api' };

describe('inbound authorization layer', () => {
  it('lets an allowed caller through on every request of its connection, naming it in the notes each time', async () => {
    const { forward, forwarded } = layer(new AuthorizationPolicy([{ from: 'default/web', to: 'api', action: 'allow' }], 'deny'), () => api);
    const socket = tlsSocket('spiffe://mesh.test/ns/default/svc/web');
    for (let i = 0; i < 3; i++) {
      const x = exchangeOn(socket);
      await expect(forward(x)).resolves.toBe(RESPONSE);
      expect(x.notes.get(CALLER_NOTE)).toBe('spiffe://mesh.test/ns/default/svc/web');
    }
    expect(forwarded()).toBe(3);
  });

  it('refuses, logs and counts every denied request on a connection, not only its first', async () => {
    const { forward, denied, forwarded } = layer(new AuthorizationPolicy([], 'deny'), () => api);
    const socket = tlsSocket('spiffe://mesh.test/ns/default/svc/web');
    for (let i = 0; i < 2; i++) await expect(forward(exchangeOn(socket))).rejects.toMatchObject({ code: 'MESH_ERR_UNAUTHORIZED' });
    expect(denied).toEqual(['spiffe://mesh.test/ns/default/svc/web', 'spiffe://mesh.test/ns/default/svc/web']);
    expect(forwarded()).toBe(0);
  });

  it('judges a connection again when the local identity changes: a caller of the old trust domain is refused after it', async () => {
    let local: Identity = api;
    const { forward, forwarded } = layer(new AuthorizationPolicy([], 'allow'), () => local);
    const socket = tlsSocket('spiffe://mesh.test/ns/default/svc/web');
    await expect(forward(exchangeOn(socket))).resolves.toBe(RESPONSE);
    local = { ...api, trustDomain: 'other.test' };
    await expect(forward(exchangeOn(socket))).rejects.toMatchObject({ code: 'MESH_ERR_UNAUTHORIZED' });
    expect(forwarded()).toBe(1);
  });

  it('refuses a connection without a verified identity', async () => {
    const { forward } = layer(new AuthorizationPolicy([], 'allow'), () => api);
    const unverified = { authorized: false, destroyed: false, getPeerCertificate: () => ({}) } as unknown as Socket;
    await expect(forward(exchangeOn(unverified))).rejects.toMatchObject({ code: 'MESH_ERR_UNAUTHORIZED' });
  });
});
