import { describe, expect, it } from 'vitest';
import { changedPaths, diffConfig } from '../../sidecar/config/diff.ts';
import { validateConfig } from '../../sidecar/config/load.ts';

const base = {
  service: { name: 'web', port: 8080 },
  upstreams: [
    { name: 'api', port: 9001, endpoints: [{ address: '127.0.0.1', port: 7001 }] },
    { name: 'db', port: 9002, protocol: 'tcp' },
  ],
};

/** `base` with `edit` applied to a deep copy, validated like a file. */
function config(edit: (raw: any) => void = () => {}) {
  const raw = structuredClone(base) as any;
  edit(raw);
  return validateConfig(raw, 'test.yaml');
}

describe('diffConfig', () => {
  it('sees nothing when the config is the same', () => {
    const diff = diffConfig(config(), config());
    expect(diff.changedFields).toEqual([]);
    expect(diff.refused).toEqual([]);
    expect(diff.upstreams).toEqual({ added: [], removed: [], changed: [], rebound: [] });
  });

  it('sorts upstreams into added, removed, changed (handler swap) and rebound (new listener)', () => {
    const next = config((raw) => {
      raw.upstreams[0].timeouts = { request: '2s' };
      raw.upstreams[0].balancer = 'least_request';
      raw.upstreams[1].port = 9003;
      raw.upstreams.push({ name: 'cache', port: 9004 });
    });
    const diff = diffConfig(config(), next);
    expect(diff.upstreams).toEqual({ added: ['cache'], removed: [], changed: ['api'], rebound: ['db'] });
    expect(diff.changedFields).toEqual(expect.arrayContaining(['upstreams[0].balancer', 'upstreams[0].timeouts.request', 'upstreams[1].port']));
    expect(diffConfig(next, config()).upstreams).toEqual({ added: [], removed: ['cache'], changed: ['api'], rebound: ['db'] });
  });

  it('treats a new protocol, service or connection limit as a new listener', () => {
    for (const edit of [(u: any) => (u.protocol = 'tcp'), (u: any) => (u.service = 'api-v2'), (u: any) => (u.connectionLimit = { maxConnections: 5 })]) {
      expect(diffConfig(config(), config((raw) => edit(raw.upstreams[0]))).upstreams.rebound).toEqual(['api']);
    }
  });

  it('sends static endpoint changes to the registry without touching the listener', () => {
    const diff = diffConfig(config(), config((raw) => raw.upstreams[0].endpoints.push({ address: '127.0.0.1', port: 7002 })));
    expect(diff.staticEndpoints).toBe(true);
    expect(diff.upstreams).toEqual({ added: [], removed: [], changed: [], rebound: [] });
    expect(diff.changedFields).toEqual(['upstreams[0].endpoints']);
  });

  it('refuses fields that need a restart, naming each one', () => {
    const next = config((raw) => {
      raw.service.name = 'web2';
      raw.admin = { port: 16000 };
      raw.security = { mtls: false, trustDomain: 'other.local' };
      raw.telemetry = { tracing: { sampleRatio: 0.5 } };
    });
    const diff = diffConfig(config(), next);
    expect(diff.refused).toEqual(
      expect.arrayContaining([
        'service.name cannot change without a restart',
        'admin.port cannot change without a restart',
        'security.trustDomain cannot change without a restart',
        'telemetry.tracing.sampleRatio cannot change without a restart',
      ]),
    );
    expect(diff.refused).toHaveLength(4);
  });

  it('applies inbound timeouts, the local app address, the log level and the drain timeout at runtime', () => {
    const next = config((raw) => {
      raw.inbound = { timeouts: { request: '3s' }, rateLimit: { requestsPerSecond: 10 } };
      raw.service.port = 8081;
      raw.logging = { level: 'debug' };
      raw.shutdown = { drainTimeout: '1s' };
    });
    const diff = diffConfig(config(), next);
    expect(diff.refused).toEqual([]);
    expect(diff).toMatchObject({ inbound: true, localApp: true, logLevel: true });
    expect(diff.changedFields).toEqual(['service.port', 'inbound.timeouts.request', 'inbound.rateLimit', 'logging.level', 'shutdown.drainTimeout']);
  });

  it('refuses an upstream whose service Consul does not watch yet', () => {
    const consul = (raw: any) => (raw.discovery = { consul: { address: 'http://127.0.0.1:8500' } });
    const diff = diffConfig(
      config(consul),
      config((raw) => {
        consul(raw);
        raw.upstreams.push({ name: 'cache', port: 9004 });
      }),
    );
    expect(diff.refused).toEqual(['upstreams[2].service: "cache" is not watched in Consul yet; a new Consul service needs a restart']);
  });
});

describe('changedPaths', () => {
  it('descends objects and compares arrays whole', () => {
    expect(changedPaths({ a: { b: 1, c: [1, 2] }, d: 1 }, { a: { b: 2, c: [1, 2, 3] }, d: 1 }, 'x')).toEqual(['x.a.b', 'x.a.c']);
    expect(changedPaths(undefined, { a: 1 }, 'x')).toEqual(['x']);
  });
});
