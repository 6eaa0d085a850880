import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertificateAuthority } from '../../certs/authority.ts';
import { generateKey } from '../../certs/keys.ts';
import { activeGeneration, initCa, retireCa, rotateCa, type CaManifest } from '../../certs/store.ts';
import { lookupToken } from '../../certs/tokens.ts';
import { createCsr } from '../../certs/x509.ts';
import { runCli } from '../helpers/cli.ts';

const dirs: string[] = [];
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-ca-unit-'));
  dirs.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;

function issue(ca: CertificateAuthority, service: string) {
  const key = generateKey('ec-p256');
  return ca.issueLeaf({ csrPem: createCsr({ commonName: service, publicKey: key.publicKey, privateKey: key.privateKey }), namespace: 'shop', service });
}

describe('meshlet ca init', () => {
  it('writes private keys 0600 in a 0700 directory, and refuses to overwrite without --force', async () => {
    const dir = join(await tempDir(), 'ca');
    const first = runCli(['ca', 'init', '--dir', dir, '--trust-domain', 'shop.test']);
    expect(await first.exited).toBe(0);
    expect(first.stdout()).toContain('ec-p256 root and intermediate for trust domain shop.test');
    expect(await mode(dir)).toBe(0o700);
    expect(await mode(join(dir, 'gen-1'))).toBe(0o700);
    for (const key of ['gen-1/root.key', 'gen-1/intermediate.key', 'tokens.json', 'ca.json']) expect(await mode(join(dir, key))).toBe(0o600);
    expect(await readFile(join(dir, 'gen-1/root.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const rootBefore = await readFile(join(dir, 'gen-1/root.pem'), 'utf8');

    const again = runCli(['ca', 'init', '--dir', dir]);
    expect(await again.exited).toBe(1);
    expect(again.stderr()).toContain('--force');
    expect(await readFile(join(dir, 'gen-1/root.pem'), 'utf8')).toBe(rootBefore);

    const forced = runCli(['ca', 'init', '--dir', dir, '--force']);
    expect(await forced.exited).toBe(0);
    expect(await readFile(join(dir, 'gen-1/root.pem'), 'utf8')).not.toBe(rootBefore);
  });

  it('names the bad flag for an unknown key type or trust domain', async () => {
    const dir = join(await tempDir(), 'ca');
    await expect(initCa({ dir, keyType: 'dsa' as never })).rejects.toThrow(/--key-type: expected one of ec-p256, rsa-2048, rsa-3072, got "dsa"/);
    await expect(initCa({ dir, trustDomain: 'Bad_Domain' })).rejects.toThrow(/--trust-domain/);
  });

  it.each(['ec-p256', 'rsa-2048'] as const)('issues standard X.509 that openssl reads and verifies (%s CA)', async (keyType) => {
    const dir = join(await tempDir(), 'ca');
    await initCa({ dir, keyType, trustDomain: 'shop.test' });
    const ca = await CertificateAuthority.load(dir);
    const leaf = issue(ca, 'cart');
    const [leafPem, intermediatePem] = leaf.chainPem.split(/(?<=-----END CERTIFICATE-----\n)/);
    await writeFile(join(dir, 'leaf.pem'), leafPem!);
    await writeFile(join(dir, 'intermediate-only.pem'), intermediatePem!);
    const text = execFileSync('openssl', ['x509', '-in', join(dir, 'leaf.pem'), '-noout', '-text'], { encoding: 'utf8' });
    expect(text).toContain('URI:spiffe://shop.test/ns/shop/svc/cart');
    expect(text).toContain('DNS:cart');
    expect(text).toMatch(/Signature Algorithm: (ecdsa-with-SHA256|sha256WithRSAEncryption)/);
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toContain('TLS Web Server Authentication, TLS Web Client Authentication');
    const verified = execFileSync('openssl', ['verify', '-CAfile', join(dir, 'bundle.pem'), '-untrusted', join(dir, 'intermediate-only.pem'), join(dir, 'leaf.pem')], { encoding: 'utf8' });
    expect(verified.trim()).toBe(`${join(dir, 'leaf.pem')}: OK`);
    const lifetime = Date.parse(new X509Certificate(leafPem!).validTo) - Date.now();
    expect(lifetime).toBeGreaterThan(23.9 * 3_600_000); // default 24 h
    expect(lifetime).toBeLessThanOrEqual(24 * 3_600_000);
  });
});

describe('meshlet ca token create', () => {
  it('prints a token once and stores only its hash', async () => {
    const dir = join(await tempDir(), 'ca');
    await initCa({ dir });
    const cli = runCli(['ca', 'token', 'create', '--dir', dir, '--service', 'cart', '--namespace', 'shop']);
    expect(await cli.exited).toBe(0);
    const token = cli.stdout().trim();
    expect(token).toMatch(/^mshl_[A-Za-z0-9_-]{40,}$/);
    const stored = await readFile(join(dir, 'tokens.json'), 'utf8');
    expect(stored).not.toContain(token);
    expect(await lookupToken(dir, token)).toMatchObject({ service: 'cart', namespace: 'shop' });
    expect(await lookupToken(dir, `${token}x`)).toBeUndefined();
    expect(await mode(join(dir, 'tokens.json'))).toBe(0o600);
  });
});

describe('CA rotation', () => {
  it('adds a root that is trusted at once and signs only from its activation; retire drops the old root when safe', async () => {
    const dir = join(await tempDir(), 'ca');
    const t0 = new Date('2026-01-01T00:00:00Z');
    await initCa({ dir, now: t0, maxLeafTtlMs: 3_600_000 });
    const gen2 = await rotateCa({ dir, activateInMs: 600_000, now: new Date(t0.getTime() + 1000) });
    const ca = await CertificateAuthority.load(dir);
    expect(ca.trustBundle().match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    expect(await readFile(join(dir, 'bundle.pem'), 'utf8')).toBe(ca.trustBundle());
    const manifest = JSON.parse(await readFile(join(dir, 'ca.json'), 'utf8')) as CaManifest;
    expect(activeGeneration(manifest.generations, new Date(t0.getTime() + 2000)).id).toBe(1);
    expect(activeGeneration(manifest.generations, new Date(gen2.activateAt)).id).toBe(2);

    const activeAt = Date.parse(gen2.activateAt);
    await expect(retireCa({ dir, now: new Date(activeAt + 1000) })).rejects.toThrow(/may be valid until/);
    const retired = await retireCa({ dir, now: new Date(activeAt + 3_600_001) });
    expect(retired.map((g) => g.id)).toEqual([1]);
    expect((await readFile(join(dir, 'bundle.pem'), 'utf8')).match(/BEGIN CERTIFICATE/g)).toHaveLength(1);
  });

  it('signs leaves with the new intermediate once active', async () => {
    const dir = join(await tempDir(), 'ca');
    await initCa({ dir });
    await rotateCa({ dir, activateInMs: 0 });
    const ca = await CertificateAuthority.load(dir);
    expect(new X509Certificate(issue(ca, 'cart').chainPem).issuer).toContain('#2');
  });
});
