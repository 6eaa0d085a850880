import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../sidecar/config/load.ts';
import { resolveConsulEndpoint } from '../../sidecar/discovery/consul-config.ts';
import { entriesToEndpoints } from '../../sidecar/discovery/consul-endpoints.ts';
import { buildRegistration, spiffeId } from '../../sidecar/discovery/consul-registration.ts';
import { isMeshError } from '../../sidecar/errors.ts';

const base = { service: { name: 'web', port: 8080 } };
const consulConf = (consul: Record<string, unknown>) => validateConfig({ ...base, discovery: { consul } }, 'meshlet.yaml').discovery.consul!;

describe('discovery.consul config', () => {
  it('has working defaults: 30s wait, registration with an HTTP check, backoff 200ms..30s', () => {
    const conf = consulConf({});
    expect(conf).toMatchObject({ wait: 30_000, tags: [], backoff: { min: 200, max: 30_000 }, registration: { enabled: true, check: { kind: 'http', interval: 10_000, ttl: 15_000, deregisterCriticalAfter: 0 } } });
    expect(conf.address).toBeUndefined();
  });

  it('names the field of a bad value', () => {
    const fail = (consul: Record<string, unknown>) => {
      try {
        validateConfig({ ...base, discovery: { consul } }, 'meshlet.yaml');
      } catch (err) {
        expect(isMeshError(err, 'CONFIG_INVALID')).toBe(true);
        return (err as Error).message;
      }
      throw new Error('expected a config error');
    };
    expect(fail({ address: 'ftp://x:1' })).toContain('discovery.consul.address: expected an http or https address');
    expect(fail({ address: 'unix:///tmp/consul.sock' })).toContain('discovery.consul.address: unix sockets are not supported');
    expect(fail({ wait: 'soon' })).toContain('discovery.consul.wait: expected a duration');
    expect(fail({ registration: { check: { kind: 'script' } } })).toContain('discovery.consul.registration.check.kind');
    expect(fail({ registration: { check: { deregisterCriticalAfter: '10s' } } })).toContain('at least 1m');
    expect(fail({ backoff: { min: '2s', max: '1s' } })).toContain('backoff.max must be at least backoff.min');
    expect(fail({ bogus: 1 })).toContain('unknown field "bogus"');
  });
});

describe('resolveConsulEndpoint', () => {
  it('uses config, then CONSUL_HTTP_ADDR / CONSUL_HTTP_TOKEN, then 127.0.0.1:8500', () => {
    expect(resolveConsulEndpoint({}, {})).toEqual({ baseUrl: 'http://127.0.0.1:8500/v1', token: undefined });
    expect(resolveConsulEndpoint({}, { CONSUL_HTTP_ADDR: 'consul.local:8600', CONSUL_HTTP_TOKEN: 'env-token' })).toEqual({ baseUrl: 'http://consul.local:8600/v1', token: 'env-token' });
    expect(resolveConsulEndpoint({ address: 'https://10.0.0.2:8501', token: 'conf' }, { CONSUL_HTTP_ADDR: 'x:1', CONSUL_HTTP_TOKEN: 'env' })).toEqual({ baseUrl: 'https://10.0.0.2:8501/v1', token: 'conf' });
    expect(resolveConsulEndpoint({ address: '[::1]:8500' }, {}).baseUrl).toBe('http://[::1]:8500/v1');
  });

  it('names CONSUL_HTTP_ADDR when that is what is wrong', () => {
    expect(() => resolveConsulEndpoint({}, { CONSUL_HTTP_ADDR: 'unix:///run/consul.sock' })).toThrow('CONSUL_HTTP_ADDR: unix sockets are not supported');
  });
});

describe('entriesToEndpoints', () => {
  it('uses the service address, or the node address when empty; weight from Weights.Passing; identity from meta', () => {
    const eps = entriesToEndpoints([
      { Node: { Node: 'n1', Address: '10.0.0.1' }, Service: { ID: 'web-1', Address: '', Port: 8080, Tags: ['v1'], Weights: { Passing: 3, Warning: 1 }, Meta: { 'spiffe-id': 'spiffe://td/ns/default/svc/web' } } },
      { Node: { Node: 'n2', Address: '10.0.0.2' }, Service: { ID: 'web-2', Address: '10.9.9.9', Port: 9090, Tags: null, Meta: null } },
      { Node: { Node: 'n3', Address: '10.0.0.3' }, Service: { ID: 'no-port', Address: '10.0.0.3' } },
      { Node: null, Service: null },
    ]);
    expect(eps).toEqual([
      { key: '10.0.0.1:8080', address: '10.0.0.1', port: 8080, weight: 3, tags: ['v1'], meta: { 'spiffe-id': 'spiffe://td/ns/default/svc/web', identity: 'spiffe://td/ns/default/svc/web', 'consul-node': 'n1', 'consul-service-id': 'web-1' } },
      { key: '10.9.9.9:9090', address: '10.9.9.9', port: 9090, weight: 1, tags: [], meta: { 'consul-node': 'n2', 'consul-service-id': 'web-2' } },
    ]);
  });
});

describe('buildRegistration', () => {
  it('builds a TTL registration with the SPIFFE ID of the configured trust domain', () => {
    const conf = consulConf({ registration: { check: { kind: 'ttl', ttl: '30s', deregisterCriticalAfter: '5m' } } });
    const reg = buildRegistration(conf, {
      service: { name: 'web', namespace: 'prod', tags: ['a'] },
      inboundAddress: '::',
      adminAddress: '127.0.0.1',
      ports: { inbound: 15001, admin: 15000 },
      trustDomain: 'example.org',
      hostname: 'host/1',
      version: '1.2.3',
    });
    expect(reg).toEqual({
      name: 'web',
      id: 'web-host-1-15001',
      port: 15001,
      tags: ['a'],
      meta: { 'spiffe-id': 'spiffe://example.org/ns/prod/svc/web', 'meshlet-inbound-port': '15001', 'meshlet-version': '1.2.3' },
      check: { checkid: 'service:web-host-1-15001', name: 'Meshlet sidecar ready', ttl: '30000ms', notes: 'Meshlet reports passing while it serves', deregistercriticalserviceafter: '300000ms' },
    });
    expect(spiffeId('meshlet.local', 'default', 'api')).toBe('spiffe://meshlet.local/ns/default/svc/api');
  });
});
