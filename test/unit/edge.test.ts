import { afterEach, describe, expect, it, vi } from 'vitest';
import { validateConfig } from '../../sidecar/config/load.ts';
import { MAX_TIMER_MS, renewalTime, retryDelay, setLongTimeout } from '../../sidecar/edge/schedule.ts';
import { sameNames } from '../../sidecar/edge/store.ts';

const DAY = 86_400_000;

describe('edge renewal schedule', () => {
  const validity = { notBefore: 0, notAfter: 90 * DAY };

  it('renews renewBefore ahead of expiry, jittered earlier by at most 10% of it and at most a day', () => {
    expect(renewalTime(validity, 30 * DAY, () => 0)).toBe(60 * DAY);
    expect(renewalTime(validity, 30 * DAY, () => 1)).toBe(59 * DAY);
    expect(renewalTime(validity, 5 * DAY, () => 1)).toBe(85 * DAY - DAY / 2);
  });

  it('renews a certificate living shorter than renewBefore at 2/3 of its life, never in a loop', () => {
    const short = { notBefore: 1000, notAfter: 1000 + 3_600_000 };
    expect(renewalTime(short, 30 * DAY, () => 0)).toBe(1000 + 2_400_000);
    expect(renewalTime(short, 30 * DAY, () => 1)).toBe(1000 + 2_400_000 - 180_000);
  });

  it('backs off failed orders by doubling from retryMin up to retryMax, jittered in the upper half', () => {
    expect(retryDelay(1, 5000, 3_600_000, () => 0)).toBe(2500);
    expect(retryDelay(1, 5000, 3_600_000, () => 1)).toBe(5000);
    expect(retryDelay(3, 5000, 3_600_000, () => 1)).toBe(20_000);
    expect(retryDelay(40, 5000, 3_600_000, () => 1)).toBe(3_600_000);
    expect(retryDelay(40, 5000, 3_600_000, () => 0)).toBe(1_800_000);
  });
});

describe('setLongTimeout', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('waits past the 24.8-day limit of Node timers instead of firing at once', () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    setLongTimeout(fired, 60 * DAY);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(60 * DAY - MAX_TIMER_MS - 1);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('can be cancelled', () => {
    vi.useFakeTimers();
    const fired = vi.fn();
    const cancel = setLongTimeout(fired, 30 * DAY);
    vi.advanceTimersByTime(MAX_TIMER_MS + 1);
    cancel();
    vi.advanceTimersByTime(30 * DAY);
    expect(fired).not.toHaveBeenCalled();
  });
});

describe('edge config', () => {
  const base = {
    service: { name: 'web', port: 8080 },
    upstreams: [
      { name: 'site', port: 9001 },
      { name: 'db', port: 9002, protocol: 'tcp' },
    ],
  };
  const acme = { domains: ['www.example.com'], storageDir: '/var/lib/meshlet/acme', termsOfServiceAgreed: true };
  const problems = (edge: unknown, extra: Record<string, unknown> = {}) => {
    try {
      validateConfig({ ...base, ...extra, edge }, 'test.yaml');
      return [];
    } catch (err) {
      return (err as Error & { problems: string[] }).problems;
    }
  };

  it('accepts files or ACME with defaults (Let\'s Encrypt, 30 days before expiry, challenge on port 80)', () => {
    const config = validateConfig({ ...base, edge: { port: 443, to: 'site', tls: { acme } } });
    expect(config.edge?.address).toBe('0.0.0.0');
    expect(config.edge?.tls.acme).toMatchObject({ directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory', renewBefore: 30 * DAY, challenge: { address: '0.0.0.0', port: 80 } });
    expect(problems({ port: 443, to: 'site', tls: { certFile: 'a.pem', keyFile: 'a.key' } })).toEqual([]);
  });

  it('names the field of each mistake', () => {
    expect(problems({ port: 443, to: 'nope', tls: { acme } })).toEqual(['edge.to: no upstream named "nope", got "nope" (test.yaml)']);
    expect(problems({ port: 443, to: 'db', tls: { acme } })[0]).toMatch(/^edge\.to: .*needs an http upstream, got "db" \(protocol tcp\)/);
    expect(problems({ port: 443, to: 'site', tls: { acme: { ...acme, termsOfServiceAgreed: undefined } } })[0]).toMatch(/^edge\.tls\.acme\.termsOfServiceAgreed: set true to agree/);
    expect(problems({ port: 443, to: 'site', tls: { acme: { ...acme, domains: ['*.example.com'] } } })[0]).toMatch(/^edge\.tls\.acme\.domains\[0\]: .*no wildcards/);
    expect(problems({ port: 443, to: 'site', tls: { acme: { ...acme, directoryUrl: 'http://ca.example/dir' } } })[0]).toMatch(/^edge\.tls\.acme\.directoryUrl: expected the https:\/\/ URL/);
    expect(problems({ port: 443, to: 'site', tls: { certFile: 'a.pem' } })[0]).toMatch(/^edge\.tls\.keyFile: certFile needs keyFile/);
    expect(problems({ port: 443, to: 'site', tls: {} })[0]).toMatch(/^edge\.tls: give certFile and keyFile, or acme/);
    expect(problems({ port: 443, to: 'site', tls: { acme } }, { workers: 2 })[0]).toMatch(/^edge\.tls\.acme: ACME needs workers: 1/);
    expect(problems({ port: 9001, to: 'site', tls: { acme } })[0]).toMatch(/^edge\.port: port 9001 is already used by upstreams\[0\]\.port/);
    expect(problems({ port: 443, to: 'site', tls: { acme: { ...acme, challenge: { port: 443 } } } })[0]).toMatch(/^edge\.tls\.acme\.challenge\.port: port 443 is already used by edge\.port/);
  });

  it('renewBefore takes days', () => {
    const config = validateConfig({ ...base, edge: { port: 443, to: 'site', tls: { acme: { ...acme, renewBefore: '20d' } } } });
    expect(config.edge?.tls.acme?.renewBefore).toBe(20 * DAY);
  });

  it('a stored certificate is reused only for the same set of names', () => {
    expect(sameNames(['a.example', 'B.example'], ['b.example', 'a.example'])).toBe(true);
    expect(sameNames(['a.example'], ['a.example', 'b.example'])).toBe(false);
  });
});
