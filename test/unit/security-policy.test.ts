import { describe, expect, it } from 'vitest';
import { identityFromSan, parseSpiffeId, spiffeId, uriSans } from '../../certs/spiffe.ts';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, validateConfig } from '../../sidecar/config/load.ts';
import { AuthorizationPolicy } from '../../sidecar/security/policy.ts';
import { renewalDelay, retryDelay, RETRY_MAX_MS } from '../../sidecar/security/renewal.ts';

const id = (service: string, namespace = 'default') => ({ trustDomain: 'mesh.test', namespace, service });

describe('authorization policy', () => {
  const api = id('api');

  it('falls back to the default when no rule matches', () => {
    expect(new AuthorizationPolicy([], 'allow').decide(id('web'), api).decision).toBe('allow');
    expect(new AuthorizationPolicy([], 'deny').decide(id('web'), api).decision).toBe('deny');
  });

  it('lets the most specific rule win: exact source over namespace wildcard over "*"', () => {
    const policy = new AuthorizationPolicy(
      [
        { from: '*', to: '*', action: 'deny' },
        { from: 'shop/*', to: 'api', action: 'allow' },
        { from: 'shop/cart', to: '*', action: 'deny' },
      ],
      'allow',
    );
    expect(policy.decide(id('web'), api).decision).toBe('deny');
    expect(policy.decide(id('checkout', 'shop'), api).decision).toBe('allow');
    expect(policy.decide(id('cart', 'shop'), api)).toMatchObject({ decision: 'deny', rule: { from: 'shop/cart' } });
  });

  it('prefers deny when two equally specific rules disagree, and matches full SPIFFE IDs', () => {
    const policy = new AuthorizationPolicy(
      [
        { from: 'web', to: 'api', action: 'allow' },
        { from: 'spiffe://mesh.test/ns/default/svc/web', to: 'api', action: 'deny' },
      ],
      'allow',
    );
    expect(policy.decide(id('web'), api).decision).toBe('deny');
    expect(policy.decide(id('web'), id('other')).decision).toBe('allow');
  });
});

describe('renewal timing', () => {
  it('renews at 70% of the remaining life, jittered by at most ±5%', () => {
    expect(renewalDelay(100_000, () => 0.5)).toBe(70_000);
    expect(renewalDelay(100_000, () => 0)).toBe(65_000);
    expect(renewalDelay(100_000, () => 0.999999)).toBe(75_000);
    expect(renewalDelay(-5, () => 0.5)).toBe(0);
  });

  it('backs off exponentially after failures, capped, and never waits past half the remaining life', () => {
    const max = () => 0.999999;
    expect(retryDelay(1, 3_600_000, max)).toBeLessThan(500);
    expect(retryDelay(4, 3_600_000, max)).toBeLessThan(4000);
    expect(retryDelay(4, 3_600_000, max)).toBeGreaterThan(3000);
    expect(retryDelay(30, 3_600_000, max)).toBeLessThanOrEqual(RETRY_MAX_MS);
    expect(retryDelay(30, 2000, max)).toBe(1000);
  });
});

describe('SPIFFE IDs', () => {
  it('formats, parses and reads them from certificate SAN strings', () => {
    expect(spiffeId(id('api', 'shop'))).toBe('spiffe://mesh.test/ns/shop/svc/api');
    expect(parseSpiffeId('spiffe://mesh.test/ns/shop/svc/api')).toEqual(id('api', 'shop'));
    expect(parseSpiffeId('spiffe://mesh.test/api')).toBeUndefined();
    expect(uriSans('DNS:a, URI:spiffe://mesh.test/ns/x/svc/y, URI:"https://x/a,b"')).toEqual(['spiffe://mesh.test/ns/x/svc/y', 'https://x/a,b']);
    expect(identityFromSan('URI:spiffe://mesh.test/ns/x/svc/y, URI:spiffe://mesh.test/ns/x/svc/z')).toBeUndefined();
  });
});

describe('security config', () => {
  const base = { service: { name: 'api', port: 8080 } };
  const problems = (security: unknown): string => {
    try {
      validateConfig({ ...base, security }, 'meshlet.yaml');
      return '';
    } catch (err) {
      return (err as Error).message;
    }
  };

  it('is off by default and accepts a local or remote CA', () => {
    expect(validateConfig(base).security.mtls).toBe(false);
    const local = validateConfig({ ...base, security: { mtls: true, ca: { dir: '/var/lib/meshlet/ca' }, leafTtl: '12h' } }).security;
    expect(local).toMatchObject({ mtls: true, leafTtl: 12 * 3_600_000, authorization: { default: 'allow', rules: [] } });
    expect(problems({ mtls: true, ca: { url: 'https://ca.internal:15443', tokenFile: '/run/token', caFile: '/etc/meshlet/bundle.pem' } })).toBe('');
  });

  it('resolves the CA paths of a config file from its own directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-sec-config-'));
    try {
      await writeFile(join(dir, 'meshlet.yaml'), 'service: { name: api, port: 8080 }\nsecurity:\n  mtls: true\n  ca: { url: "https://ca:15443", tokenFile: secrets/token, caFile: ./ca/bundle.pem }\n');
      const { security } = await loadConfigFile(join(dir, 'meshlet.yaml'));
      expect(security.ca).toEqual({ url: 'https://ca:15443', tokenFile: join(dir, 'secrets/token'), caFile: join(dir, 'ca/bundle.pem') });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names the field when mTLS has no CA, authorization has no mTLS, or a CA is half configured', () => {
    expect(problems({ mtls: true })).toMatch(/security\.ca: mtls: true needs a CA/);
    expect(problems({ authorization: { default: 'deny' } })).toMatch(/security\.authorization: authorization needs mtls: true/);
    expect(problems({ mtls: true, ca: { url: 'https://ca:1', caFile: '/x' } })).toMatch(/security\.ca/);
    expect(problems({ mtls: true, ca: { url: 'http://ca:1', token: 't', caFile: '/x' } })).toMatch(/security\.ca/);
    expect(problems({ mtls: true, ca: { dir: '/x' }, authorization: { rules: [{ from: 'a b', action: 'allow' }] } })).toMatch(/security\.authorization\.rules\[0\]\.from/);
  });
});
