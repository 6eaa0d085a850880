import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Agent, request } from 'undici';
import { CaServer } from '../../certs/server.ts';
import { generateKey } from '../../certs/keys.ts';
import { createToken } from '../../certs/tokens.ts';
import { createCsr, toPem } from '../../certs/x509.ts';
import { createLogger } from '../../sidecar/telemetry/logger.ts';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend } from '../helpers/backend.ts';
import { createTestCa, type TestCa } from '../helpers/mesh-ca.ts';
import { adminUrl, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

describe('CA API (meshlet ca serve)', () => {
  let ca: TestCa;
  let server: CaServer;
  let base: string;
  let trust: Agent;
  let token: string;
  const logLines: string[] = [];
  const cleanup: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    ca = await createTestCa({ trustDomain: 'mesh.test' });
    token = await createToken(ca.dir, 'greeter');
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logLines.push(chunk.toString());
        done();
      },
    });
    server = await CaServer.create({ dir: ca.dir, log: createLogger('info', sink) });
    base = `https://127.0.0.1:${await server.listen(0, '127.0.0.1')}`;
    trust = new Agent({ connect: { ca: ca.ca.trustBundle() } });
  });
  afterAll(async () => {
    await trust.close();
    await server.close();
    await ca.cleanup();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  const issuedCount = () => logLines.filter((l) => l.includes('issued leaf certificate')).length;

  function csrFor(commonName: string, extra: { uris?: string[]; dnsNames?: string[] } = {}) {
    const key = generateKey('ec-p256');
    return { key, csr: createCsr({ commonName, publicKey: key.publicKey, privateKey: key.privateKey, ...extra }) };
  }

  async function post(path: string, body: unknown, headers: Record<string, string> = {}, dispatcher: Agent = trust) {
    const res = await request(`${base}${path}`, { method: 'POST', dispatcher, headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, string> };
  }

  it('signs a CSR presented with the service token: SPIFFE URI SAN, DNS SANs, requested TTL', async () => {
    const before = issuedCount();
    const { csr, key } = csrFor('greeter');
    const res = await post('/v1/certificates', { csr, ttlMs: 3_600_000 }, { authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    expect(res.body.spiffeId).toBe('spiffe://mesh.test/ns/default/svc/greeter');
    const leaf = new X509Certificate(res.body.certificateChain!);
    expect(leaf.subjectAltName).toBe('URI:spiffe://mesh.test/ns/default/svc/greeter, DNS:greeter, DNS:greeter.default');
    expect(leaf.checkPrivateKey(key.privateKey)).toBe(true);
    const lifetime = Date.parse(leaf.validTo) - Date.now();
    expect(lifetime).toBeGreaterThan(3_500_000);
    expect(lifetime).toBeLessThanOrEqual(3_600_000);
    expect(res.body.trustBundle).toBe(ca.ca.trustBundle());
    expect(issuedCount()).toBe(before + 1);
  });

  it('refuses a missing or wrong token with 401 bad_token and signs nothing', async () => {
    const before = issuedCount();
    const { csr } = csrFor('greeter');
    const missing = await post('/v1/certificates', { csr });
    expect(missing).toMatchObject({ status: 401, body: { error: 'bad_token', code: 'MESH_ERR_CA_BAD_TOKEN' } });
    expect(missing.body.message).toContain('Authorization: Bearer');
    const wrong = await post('/v1/certificates', { csr }, { authorization: 'Bearer mshl_not-a-real-token' });
    expect(wrong).toMatchObject({ status: 401, body: { error: 'bad_token', message: 'unknown bootstrap token' } });
    expect(issuedCount()).toBe(before);
  });

  it('refuses a CSR for another service with 403 forbidden_identity and signs nothing', async () => {
    const before = issuedCount();
    const otherName = await post('/v1/certificates', { csr: csrFor('billing').csr }, { authorization: `Bearer ${token}` });
    expect(otherName).toMatchObject({ status: 403, body: { error: 'forbidden_identity' } });
    expect(otherName.body.message).toContain('"billing"');
    const otherUri = await post('/v1/certificates', { csr: csrFor('greeter', { uris: ['spiffe://mesh.test/ns/default/svc/billing'] }).csr }, { authorization: `Bearer ${token}` });
    expect(otherUri).toMatchObject({ status: 403, body: { error: 'forbidden_identity' } });
    expect(otherUri.body.message).toContain('svc/billing');
    const otherDns = await post('/v1/certificates', { csr: csrFor('greeter', { dnsNames: ['billing.example.com'] }).csr }, { authorization: `Bearer ${token}` });
    expect(otherDns).toMatchObject({ status: 403, body: { error: 'forbidden_identity' } });
    expect(issuedCount()).toBe(before);
  });

  it('refuses malformed requests and CSRs with 400 bad_csr and a clear message', async () => {
    const before = issuedCount();
    const auth = { authorization: `Bearer ${token}` };
    const notJson = await post('/v1/certificates', 'csr please', auth);
    expect(notJson).toMatchObject({ status: 400, body: { error: 'bad_csr' } });
    expect(notJson.body.message).toContain('JSON');
    const notPem = await post('/v1/certificates', { csr: 'hello' }, auth);
    expect(notPem.body.message).toContain('CERTIFICATE REQUEST');
    const { csr } = csrFor('greeter');
    // Same structure, one byte of the signed subject changed: the signature no longer verifies.
    const der = Buffer.from(csr.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
    const at = der.indexOf('greeter');
    der[at + 6] = 'x'.charCodeAt(0);
    const tampered = await post('/v1/certificates', { csr: toPem('CERTIFICATE REQUEST', der) }, auth);
    expect(tampered).toMatchObject({ status: 400, body: { error: 'bad_csr' } });
    expect(tampered.body.message).toContain('signature does not verify');
    expect(issuedCount()).toBe(before);
  });

  it('renews with the current certificate instead of a token, and refuses renewal without one', async () => {
    const first = csrFor('greeter');
    const issued = await post('/v1/certificates', { csr: first.csr }, { authorization: `Bearer ${token}` });
    const withCert = new Agent({ connect: { ca: ca.ca.trustBundle(), cert: issued.body.certificateChain, key: first.key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string } });
    cleanup.push(() => withCert.close());
    const renewed = await post('/v1/certificates/renew', { csr: csrFor('greeter').csr }, {}, withCert);
    expect(renewed.status).toBe(200);
    expect(renewed.body.spiffeId).toBe('spiffe://mesh.test/ns/default/svc/greeter');
    const anonymous = await post('/v1/certificates/renew', { csr: csrFor('greeter').csr });
    expect(anonymous).toMatchObject({ status: 401, body: { error: 'bad_token' } });
    const forOther = await post('/v1/certificates/renew', { csr: csrFor('billing').csr }, {}, withCert);
    expect(forOther.status).toBe(403);
  });

  it('serves the trust bundle', async () => {
    const res = await request(`${base}/v1/trust-bundle`, { dispatcher: trust });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ trustDomain: 'mesh.test', trustBundle: ca.ca.trustBundle() });
  });

  it('bootstraps two sidecars from the API (token files) and carries mTLS traffic between them', async () => {
    const app = await startBackend('greeter');
    cleanup.push(() => app.close());
    const tokenFile = (name: string) => join(ca.dir, '..', `${name}.token`);
    await writeFile(tokenFile('frontend'), await createToken(ca.dir, 'frontend'), { mode: 0o600 });
    const remote = (name: string) => ({ mtls: true, ca: { url: base, tokenFile: tokenFile(name), caFile: join(ca.dir, 'bundle.pem') } });
    // greeter has its token inline, frontend reads it from a file: both are supported.
    const greeter: Sidecar = await startSidecar({ service: { name: 'greeter', port: app.port }, security: { mtls: true, ca: { url: base, token, caFile: join(ca.dir, 'bundle.pem') } } });
    cleanup.push(() => greeter.stop());
    const frontend = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: greeter.ports.inbound }] }],
      security: remote('frontend'),
    });
    cleanup.push(() => frontend.stop());
    const res = await request(`${upstreamUrl(frontend, 'greeter')}/via-ca-api`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    const certs = (await (await request(`${adminUrl(frontend)}/certs`)).body.json()) as { identity: string; ca: string };
    expect(certs).toMatchObject({ identity: 'spiffe://mesh.test/ns/default/svc/frontend', ca: `CA API ${base}` });
    // The config shown on the admin API never carries the token.
    const shown = JSON.stringify(await (await request(`${adminUrl(greeter)}/config`)).body.json());
    expect(shown).toContain('"ca":{"url"');
    expect(shown).not.toContain(token);
  });

  it('fails a sidecar start loudly when its token is refused', async () => {
    const err = await startSidecar({ service: { name: 'greeter', port: 1 }, security: { mtls: true, ca: { url: base, token: 'mshl_wrong', caFile: join(ca.dir, 'bundle.pem') } } }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/refused POST \/v1\/certificates with 401: unknown bootstrap token/);
  });
});
