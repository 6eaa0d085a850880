import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { createServer as createNetServer, connect as netConnect, type Server } from 'node:net';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey } from '../../certs/keys.ts';
import { createCertificate } from '../../certs/x509.ts';
import { makeEndpoint, type DiscoveryProvider } from '../../sidecar/discovery/types.ts';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { isMeshError } from '../../sidecar/errors.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { createTestCa, tlsRequest, type TestCa } from '../helpers/mesh-ca.ts';
import { retireCa, rotateCa } from '../../certs/store.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl, type RawConfig } from '../helpers/sidecar.ts';

describe('mTLS between sidecars (built-in CA, real TLS on loopback)', () => {
  let ca: TestCa;
  let otherCa: TestCa;
  const cleanup: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    ca = await createTestCa({ trustDomain: 'mesh.test' });
    otherCa = await createTestCa({ trustDomain: 'mesh.test' });
  });
  afterAll(async () => {
    await ca.cleanup();
    await otherCa.cleanup();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function server(name: string, security: RawConfig = {}, inbound: RawConfig = {}): Promise<{ app: TestBackend; sidecar: Sidecar }> {
    const app = await startBackend(name);
    cleanup.push(() => app.close());
    const sidecar = await startSidecar({ service: { name, port: app.port }, inbound, security: { mtls: true, ca: { dir: ca.dir }, ...security } });
    cleanup.push(() => sidecar.stop());
    return { app, sidecar };
  }

  async function client(upstream: string, port: number, security: RawConfig = {}, extra: RawConfig = {}): Promise<Sidecar> {
    const sidecar = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: upstream, endpoints: [{ address: '127.0.0.1', port }], ...extra }],
      security: { mtls: true, ca: { dir: ca.dir }, ...security },
    });
    cleanup.push(() => sidecar.stop());
    return sidecar;
  }

  it('carries a call through two sidecars over mTLS, with the caller identity verified', async () => {
    const { app, sidecar: greeter } = await server('greeter');
    const frontend = await client('greeter', greeter.ports.inbound);
    const res = await request(`${upstreamUrl(frontend, 'greeter')}/hello`);
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toMatchObject({ backend: 'greeter', url: '/hello' });
    // The second hop (frontend sidecar -> greeter sidecar) was TLS.
    expect(app.lastHeaders?.forwarded).toMatch(/proto=http;.*, for=127\.0\.0\.1;proto=https/);
    const certs = await (await request(`${adminUrl(greeter)}/certs`)).body.json();
    expect(certs).toMatchObject({ identity: 'spiffe://mesh.test/ns/default/svc/greeter', trustBundleRoots: 1 });
  });

  it('refuses clients without a certificate, from another CA, expired, or without a mesh identity', async () => {
    const { app, sidecar: greeter } = await server('greeter');
    const port = greeter.ports.inbound;
    const bundle = ca.ca.trustBundle();
    const errors: string[] = [];
    greeter.events.on('tlsHandshakeError', (e) => errors.push(e.error));

    const good = await tlsRequest(port, { ca: bundle, ...ca.leaf('frontend') });
    expect(good.ok).toBe(true);
    expect(good.text).toMatch(/^HTTP\/1\.1 200/);
    const hitsAfterGood = app.hits;

    const noCert = await tlsRequest(port, { ca: bundle });
    expect(noCert.ok).toBe(false);
    const foreign = await tlsRequest(port, { ca: bundle, ...otherCa.leaf('frontend') });
    expect(foreign.ok).toBe(false);
    const hourAgo = Date.now() - 3_600_000;
    const expired = await tlsRequest(port, { ca: bundle, ...ca.leaf('frontend', { validity: { notBefore: new Date(hourAgo - 60_000), notAfter: new Date(hourAgo) } }) });
    expect(expired.ok).toBe(false);
    // Signed by our own intermediate, so the chain verifies, but the identity is not one of ours.
    const forged = (uris: string[]) => {
      const key = generateKey('ec-p256');
      const cert = createCertificate({
        subject: { commonName: 'frontend' },
        issuer: { organization: 'Meshlet', commonName: 'Meshlet Intermediate CA mesh.test #1' },
        publicKey: key.publicKey,
        signingKey: intermediateKey,
        issuerPublicKey: createPublicKey(intermediatePem),
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3_600_000),
        uris,
      });
      return { key: key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, cert: cert + intermediatePem };
    };
    const intermediatePem = readFileSync(join(ca.dir, 'gen-1/intermediate.pem'), 'utf8');
    const intermediateKey = createPrivateKey(readFileSync(join(ca.dir, 'gen-1/intermediate.key'), 'utf8'));
    const before = errors.length;
    const otherDomain = await tlsRequest(port, { ca: bundle, ...forged(['spiffe://other.test/ns/default/svc/frontend']) });
    expect(otherDomain.ok).toBe(false);
    const noSpiffe = await tlsRequest(port, { ca: bundle, ...forged([]) });
    expect(noSpiffe.ok).toBe(false);
    const twoIds = await tlsRequest(port, { ca: bundle, ...forged(['spiffe://mesh.test/ns/default/svc/a', 'spiffe://mesh.test/ns/default/svc/b']) });
    expect(twoIds.ok).toBe(false);
    expect(errors.slice(before).filter((e) => e.includes('no SPIFFE ID of trust domain mesh.test'))).toHaveLength(3);

    expect(app.hits).toBe(hitsAfterGood);
    expect(errors.join('\n')).toMatch(/certificate/i);
  });

  it('refuses a peer sidecar whose SPIFFE ID is not the expected service: 502 peer_identity', async () => {
    const { app, sidecar: impostor } = await server('billing');
    // The frontend believes the endpoint is "greeter"; it presents billing's valid mesh certificate.
    const frontend = await client('greeter', impostor.ports.inbound);
    const handshakeErrors: string[] = [];
    frontend.events.on('tlsHandshakeError', (e) => handshakeErrors.push(`${e.side} ${e.error}`));
    const res = await request(`${upstreamUrl(frontend, 'greeter')}/hello`);
    expect(res.statusCode).toBe(502);
    expect(res.headers['x-meshlet-error']).toBe('peer_identity');
    expect(((await res.body.json()) as { message: string }).message).toContain('expected spiffe://mesh.test/ns/default/svc/greeter');
    expect(app.hits).toBe(0);
    expect(handshakeErrors.some((e) => e.startsWith('outbound') && e.includes('svc/billing'))).toBe(true);
  });

  it('takes the namespace of the peer identity from discovery metadata, never another service', async () => {
    const app = await startBackend('greeter-shop');
    cleanup.push(() => app.close());
    const shopGreeter = await startSidecar({ service: { name: 'greeter', namespace: 'shop', port: app.port }, security: { mtls: true, ca: { dir: ca.dir } } });
    cleanup.push(() => shopGreeter.stop());
    const { sidecar: billing } = await server('billing');
    // A provider (like Consul) that names each endpoint's SPIFFE ID in its metadata.
    const namedAs = (port: number, identity: string | undefined): DiscoveryProvider => ({
      name: 'test-meta',
      start: async (emit) => emit({ provider: 'test-meta', services: new Map([['greeter', [makeEndpoint({ address: '127.0.0.1', port, meta: identity ? { identity } : {} })]]]) }),
      status: () => ({ provider: 'test-meta', state: 'ok' }),
      stop: async () => {},
    });
    const call = async (port: number, identity: string | undefined) => {
      const frontend = await startSidecar(
        { service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'greeter' }], security: { mtls: true, ca: { dir: ca.dir } } },
        { providers: [namedAs(port, identity)] },
      );
      cleanup.push(() => frontend.stop());
      const res = await request(`${upstreamUrl(frontend, 'greeter')}/named`);
      await res.body.dump();
      return `${res.statusCode} ${res.headers['x-meshlet-error'] ?? ''}`.trim();
    };
    // Without metadata the frontend expects its own namespace: the shop greeter is refused.
    expect(await call(shopGreeter.ports.inbound, undefined)).toBe('502 peer_identity');
    expect(await call(shopGreeter.ports.inbound, 'spiffe://mesh.test/ns/shop/svc/greeter')).toBe('200');
    // An instance cannot vouch for itself under another service's name, or from another trust domain.
    expect(await call(billing.ports.inbound, 'spiffe://mesh.test/ns/default/svc/billing')).toBe('502 peer_identity');
    expect(await call(shopGreeter.ports.inbound, 'spiffe://elsewhere.test/ns/shop/svc/greeter')).toBe('502 peer_identity');
  });

  it('answers 403 unauthorized to a caller the policy denies, and lets an allowed one through', async () => {
    const { app, sidecar: greeter } = await server('greeter', { authorization: { default: 'deny', rules: [{ from: 'frontend', action: 'allow' }, { from: 'default/*', action: 'deny' }] } });
    const denied: Array<{ source: string; destination: string }> = [];
    greeter.events.on('authorizationDenied', (e) => denied.push(e));
    const frontend = await client('greeter', greeter.ports.inbound);
    const allowed = await request(`${upstreamUrl(frontend, 'greeter')}/ok`);
    expect(allowed.statusCode).toBe(200);
    await allowed.body.dump();

    const intruder = await startSidecar({
      service: { name: 'intruder', port: 1 },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: greeter.ports.inbound }] }],
      security: { mtls: true, ca: { dir: ca.dir } },
    });
    cleanup.push(() => intruder.stop());
    const hits = app.hits;
    const res = await request(`${upstreamUrl(intruder, 'greeter')}/secret`);
    expect(res.statusCode).toBe(403);
    expect(res.headers['x-meshlet-error']).toBe('unauthorized');
    expect(((await res.body.json()) as { message: string }).message).toContain('spiffe://mesh.test/ns/default/svc/intruder');
    expect(app.hits).toBe(hits);
    expect(denied).toEqual([{ source: 'spiffe://mesh.test/ns/default/svc/intruder', destination: 'spiffe://mesh.test/ns/default/svc/greeter', protocol: 'http' }]);
  });

  it('closes TCP connections from denied identities and pipes allowed ones over mTLS', async () => {
    const echo: Server = createNetServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => echo.close(() => r())));
    const echoPort = (echo.address() as { port: number }).port;
    const db = await startSidecar({
      service: { name: 'db', port: echoPort },
      inbound: { protocol: 'tcp' },
      security: { mtls: true, ca: { dir: ca.dir }, authorization: { default: 'deny', rules: [{ from: 'frontend', to: 'db', action: 'allow' }] } },
    });
    cleanup.push(() => db.stop());
    const denied: string[] = [];
    db.events.on('authorizationDenied', (e) => denied.push(`${e.protocol} ${e.source}`));
    const talk = async (sidecar: Sidecar): Promise<string> => {
      const socket = netConnect(sidecar.ports.upstreams.db!, '127.0.0.1');
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      await new Promise<void>((resolve) => {
        socket.on('connect', () => socket.end('ping over mtls'));
        socket.on('close', () => resolve());
        socket.on('error', () => resolve());
      });
      return Buffer.concat(chunks).toString();
    };
    const frontend = await client('db', db.ports.inbound, {}, { protocol: 'tcp' });
    expect(await talk(frontend)).toBe('ping over mtls');
    const other = await startSidecar({
      service: { name: 'reports', port: 1 },
      upstreams: [{ name: 'db', protocol: 'tcp', endpoints: [{ address: '127.0.0.1', port: db.ports.inbound }] }],
      security: { mtls: true, ca: { dir: ca.dir } },
    });
    cleanup.push(() => other.stop());
    expect(await talk(other)).toBe('');
    expect(denied).toEqual(['tcp spiffe://mesh.test/ns/default/svc/reports']);
  });

  it('fails to start, naming the CA, when mTLS is on and no certificate can be obtained', async () => {
    const err = await startSidecar({
      service: { name: 'greeter', port: 1 },
      security: { mtls: true, ca: { url: 'https://127.0.0.1:1', token: 'mshl_x', caFile: `${ca.dir}/bundle.pem` } },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isMeshError(err, 'TLS_NO_CERTIFICATE')).toBe(true);
    expect((err as Error).message).toContain('https://127.0.0.1:1');
    expect((err as Error).message).toContain('refusing to serve plaintext');
  });
});

describe('certificate rotation under continuous traffic', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  /** Calls the frontend's upstream in a loop (two callers) until stopped; counts answers and failures. */
  function load(url: string): { stop: () => Promise<{ ok: number; failed: string[] }> } {
    let running = true;
    let ok = 0;
    const failed: string[] = [];
    const caller = async () => {
      while (running) {
        try {
          const res = await request(url);
          const text = await res.body.text();
          if (res.statusCode === 200) ok++;
          else failed.push(`${res.statusCode} ${text}`);
        } catch (err) {
          failed.push((err as Error).message);
        }
      }
    };
    const callers = [caller(), caller()];
    return {
      stop: async () => {
        running = false;
        await Promise.all(callers);
        return { ok, failed };
      },
    };
  }

  async function pair(caDir: string, security: RawConfig): Promise<{ greeter: Sidecar; frontend: Sidecar }> {
    const app = await startBackend('greeter');
    cleanup.push(() => app.close());
    const greeter = await startSidecar({ service: { name: 'greeter', port: app.port }, security: { mtls: true, ca: { dir: caDir }, ...security } });
    cleanup.push(() => greeter.stop());
    const frontend = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: greeter.ports.inbound }] }],
      security: { mtls: true, ca: { dir: caDir }, ...security },
    });
    cleanup.push(() => frontend.stop());
    return { greeter, frontend };
  }

  it('renews leaves at ~70% of their life and swaps contexts without losing a request', { timeout: 40_000 }, async () => {
    const ca = await createTestCa({ trustDomain: 'mesh.test' });
    cleanup.push(() => ca.cleanup());
    const { greeter, frontend } = await pair(ca.dir, { leafTtl: '4s' });
    const renewals = { greeter: 0, frontend: 0 };
    greeter.events.on('certificate', () => renewals.greeter++);
    frontend.events.on('certificate', () => renewals.frontend++);
    const traffic = load(`${upstreamUrl(frontend, 'greeter')}/during-rotation`);
    await eventually('both sidecars renewed their leaf twice', () => renewals.greeter >= 2 && renewals.frontend >= 2, 20_000);
    const { ok, failed } = await traffic.stop();
    expect(failed).toEqual([]);
    expect(ok).toBeGreaterThan(10);
  });

  it('rotates the CA root with an overlapping trust bundle without losing a request', { timeout: 60_000 }, async () => {
    const ca = await createTestCa({ trustDomain: 'mesh.test' });
    cleanup.push(() => ca.cleanup());
    const { greeter, frontend } = await pair(ca.dir, { leafTtl: '4s', bundleRefresh: '100ms' });
    const certs = async (s: Sidecar) => (await (await request(`${adminUrl(s)}/certs`)).body.json()) as { issuer: string; trustBundleRoots: number };
    const traffic = load(`${upstreamUrl(frontend, 'greeter')}/during-ca-rotation`);
    // The new root is trusted at once and signs only after the sidecars had time to fetch it.
    await rotateCa({ dir: ca.dir, activateInMs: 600 });
    await eventually('both sidecars trust old and new roots', async () => (await certs(greeter)).trustBundleRoots === 2 && (await certs(frontend)).trustBundleRoots === 2, 10_000);
    await eventually('both sidecars hold leaves from the new root', async () => (await certs(greeter)).issuer.includes('#2') && (await certs(frontend)).issuer.includes('#2'), 15_000);
    await retireCa({ dir: ca.dir, force: true });
    await eventually('both sidecars dropped the old root', async () => (await certs(greeter)).trustBundleRoots === 1 && (await certs(frontend)).trustBundleRoots === 1, 10_000);
    const renewed = { n: 0 };
    frontend.events.on('certificate', () => renewed.n++);
    await eventually('a renewal under the new root alone', () => renewed.n >= 1, 10_000);
    const { ok, failed } = await traffic.stop();
    expect(failed).toEqual([]);
    expect(ok).toBeGreaterThan(10);
  });
});
