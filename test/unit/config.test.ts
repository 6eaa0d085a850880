import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile, parseConfigEnvText, validateConfig } from '../../sidecar/config/load.ts';
import { parseDuration } from '../../sidecar/config/duration.ts';
import { DEFAULT_ADMIN_PORT, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_INBOUND_PORT, DEFAULT_REQUEST_TIMEOUT_MS } from '../../sidecar/config/schema.ts';
import { isMeshError } from '../../sidecar/errors.ts';

const SERVICE = { name: 'frontend', port: 8080 };

/** The problem lines a config produces (empty when valid). */
function problems(input: unknown, source = 'meshlet.yaml'): string[] {
  try {
    validateConfig(input, source);
    return [];
  } catch (err) {
    expect(isMeshError(err, 'CONFIG_INVALID')).toBe(true);
    return (err as { problems?: string[] }).problems ?? [(err as Error).message];
  }
}

describe('config validation: a good config', () => {
  it('fills every default and freezes the result', () => {
    const config = validateConfig({ service: SERVICE, upstreams: [{ name: 'greeter', port: 9001, endpoints: [{ address: '10.0.0.5', port: 15001 }] }] }, 'meshlet.yaml');
    expect(config.admin).toMatchObject({ address: '127.0.0.1', port: DEFAULT_ADMIN_PORT });
    expect(config.inbound).toMatchObject({ address: '0.0.0.0', port: DEFAULT_INBOUND_PORT, protocol: 'http' });
    const upstream = config.upstreams[0]!;
    expect(upstream).toMatchObject({ address: '127.0.0.1', protocol: 'http', balancer: 'round_robin' });
    expect(upstream.timeouts.connect).toBe(DEFAULT_CONNECT_TIMEOUT_MS);
    expect(upstream.timeouts.request).toBe(DEFAULT_REQUEST_TIMEOUT_MS);
    expect(upstream.endpoints[0]).toEqual({ address: '10.0.0.5', port: 15001, weight: 1, tags: [] });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.upstreams[0]!.timeouts)).toBe(true);
    expect(() => ((config.admin as { port: number }).port = 1)).toThrow(TypeError);
  });

  it('parses durations written as text or milliseconds', () => {
    const config = validateConfig({ service: SERVICE, upstreams: [{ name: 'a', port: 9001, timeouts: { connect: '250ms', request: '1.5s', idle: '2m', poolIdle: 700 } }] });
    expect(config.upstreams[0]!.timeouts).toEqual({ connect: 250, request: 1500, idle: 120_000, poolIdle: 700 });
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('ten seconds')).toBeUndefined();
    expect(parseDuration(-1)).toBeUndefined();
  });
});

describe('config validation: each kind of mistake names the field, the value and the file', () => {
  it('wrong type', () => {
    expect(problems({ service: SERVICE, upstreams: [{ name: 'a', port: 9001 }, { name: 'b', port: 'abc' }] })).toEqual([
      'upstreams[1].port: expected integer 0-65535, got "abc" (meshlet.yaml)',
    ]);
    expect(problems({ service: SERVICE, logging: { accessLog: 'yes' } })).toEqual(['logging.accessLog: expected boolean, got "yes" (meshlet.yaml)']);
    expect(problems({ service: SERVICE, upstreams: 'greeter' })).toEqual(['upstreams: expected array, got "greeter" (meshlet.yaml)']);
  });

  it('out of range port', () => {
    expect(problems({ service: { name: 'a', port: 70000 } })).toEqual(['service.port: expected integer 1-65535, got 70000 (meshlet.yaml)']);
    expect(problems({ service: { name: 'a', port: 0 } })).toEqual(['service.port: expected integer 1-65535, got 0 (meshlet.yaml)']);
    expect(problems({ service: SERVICE, inbound: { port: -1 } })).toEqual(['inbound.port: expected integer 0-65535, got -1 (meshlet.yaml)']);
  });

  it('out of range number', () => {
    expect(problems({ service: SERVICE, upstreams: [{ name: 'a', port: 9001, endpoints: [{ address: 'x', port: 1, weight: 0 }] }] })).toEqual([
      'upstreams[0].endpoints[0].weight: expected number to be >=1, got 0 (meshlet.yaml)',
    ]);
  });

  it('unknown field, at the root and nested', () => {
    expect(problems({ service: SERVICE, upstream: [] })).toEqual(['(root): unknown field "upstream" (meshlet.yaml)']);
    expect(problems({ service: SERVICE, upstreams: [{ name: 'a', port: 9001, timeout: '1s' }] })).toEqual(['upstreams[0]: unknown field "timeout" (meshlet.yaml)']);
  });

  it('bad duration', () => {
    expect(problems({ service: SERVICE, upstreams: [{ name: 'a', port: 9001, timeouts: { connect: '5 parsecs' } }] })).toEqual([
      'upstreams[0].timeouts.connect: expected a duration such as 500ms, 2s, 1m (or milliseconds as a number), got "5 parsecs" (meshlet.yaml)',
    ]);
    expect(problems({ service: SERVICE, shutdown: { drainTimeout: -5 } })).toEqual([
      'shutdown.drainTimeout: expected a duration such as 500ms, 2s, 1m (or milliseconds as a number), got -5 (meshlet.yaml)',
    ]);
  });

  it('bad enum value', () => {
    const lines = problems({ service: SERVICE, upstreams: [{ name: 'a', port: 9001, balancer: 'fastest' }] });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^upstreams\[0\]\.balancer: expected one of "round_robin"\|"least_request".*, got "fastest" \(meshlet\.yaml\)$/);
  });

  it('duplicate upstream names', () => {
    expect(problems({ service: SERVICE, upstreams: [{ name: 'a', port: 9001 }, { name: 'b', port: 9002 }, { name: 'a', port: 9003 }] })).toEqual([
      'upstreams[2].name: already the name of upstreams[0], got "a" (meshlet.yaml)',
    ]);
  });

  it('port clash between listeners, including a wildcard address and the local app', () => {
    expect(problems({ service: SERVICE, upstreams: [{ name: 'a', port: 9001 }, { name: 'b', port: 9001 }] })).toEqual([
      'upstreams[1].port: port 9001 is already used by upstreams[0].port, got 9001 (meshlet.yaml)',
    ]);
    // inbound binds 0.0.0.0 by default, so it takes 15001 on 127.0.0.1 too.
    expect(problems({ service: SERVICE, upstreams: [{ name: 'a', port: DEFAULT_INBOUND_PORT }] })).toEqual([
      `upstreams[0].port: port ${DEFAULT_INBOUND_PORT} is already used by inbound.port, got ${DEFAULT_INBOUND_PORT} (meshlet.yaml)`,
    ]);
    expect(problems({ service: SERVICE, admin: { port: 8080 } })).toEqual(['admin.port: port 8080 is already used by service.port (the local app), got 8080 (meshlet.yaml)']);
    // Different concrete addresses do not clash; port 0 never clashes.
    expect(problems({ service: SERVICE, inbound: { address: '127.0.0.2' }, upstreams: [{ name: 'a', port: DEFAULT_INBOUND_PORT }, { name: 'b', port: 0 }, { name: 'c', port: 0 }] })).toEqual([]);
  });

  it('missing required fields', () => {
    expect(problems({ service: { name: 'a' } })).toEqual(['service.port: expected integer 1-65535, but it is missing (meshlet.yaml)']);
    expect(problems({})).toEqual(['service: expected object, but it is missing (meshlet.yaml)']);
    expect(problems({ service: SERVICE, upstreams: [{ port: 9001 }] })).toEqual(['upstreams[0].name: expected a service name, but it is missing (meshlet.yaml)']);
  });

  it('lists every problem, one line each', () => {
    const lines = problems({ service: { name: 'bad name!', port: 'x' }, admin: { port: 99999 } });
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => l.split(':')[0])).toEqual(['service.name', 'service.port', 'admin.port']);
  });
});

describe('loading config files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads YAML and JSON', async () => {
    await writeFile(join(dir, 'ok.yaml'), 'service: { name: frontend, port: 8080 }\nupstreams:\n  - { name: greeter, port: 9001, timeouts: { request: 2s } }\n');
    await writeFile(join(dir, 'ok.json'), JSON.stringify({ service: SERVICE }));
    expect((await loadConfigFile(join(dir, 'ok.yaml'))).upstreams[0]!.timeouts.request).toBe(2000);
    expect((await loadConfigFile(join(dir, 'ok.json'))).service.name).toBe('frontend');
  });

  it('names the file in validation and syntax errors', async () => {
    await writeFile(join(dir, 'bad.yaml'), 'service: { name: frontend, port: 8080 }\nupstreams:\n  - { name: a, port: 9001 }\n  - { name: b, port: abc }\n');
    await expect(loadConfigFile(join(dir, 'bad.yaml'))).rejects.toThrow('upstreams[1].port: expected integer 0-65535, got "abc" (bad.yaml)');
    await writeFile(join(dir, 'broken.yaml'), 'service: { name: frontend\n');
    await expect(loadConfigFile(join(dir, 'broken.yaml'))).rejects.toThrow(/^broken\.yaml: not valid YAML/);
    await writeFile(join(dir, 'broken.json'), '{"service": ');
    await expect(loadConfigFile(join(dir, 'broken.json'))).rejects.toThrow(/^broken\.json: not valid JSON/);
    await expect(loadConfigFile(join(dir, 'absent.yaml'))).rejects.toThrow(/cannot read config file .*absent\.yaml/);
  });

  it('refuses an empty file clearly', async () => {
    await writeFile(join(dir, 'empty.yaml'), '');
    await expect(loadConfigFile(join(dir, 'empty.yaml'))).rejects.toThrow('(root): expected object, got null (empty.yaml)');
  });
});

describe('config text from an environment variable', () => {
  it('reads JSON (what the injector writes) and YAML, including YAML flow mappings that are not JSON', () => {
    expect(parseConfigEnvText('{"service":{"name":"web","port":8080}}', 'MESHLET_CONFIG')).toEqual({ service: { name: 'web', port: 8080 } });
    expect(parseConfigEnvText('  {service: {name: web, port: 8080}}', 'MESHLET_CONFIG')).toEqual({ service: { name: 'web', port: 8080 } });
    expect(parseConfigEnvText('service:\n  name: web\n', 'MESHLET_CONFIG')).toEqual({ service: { name: 'web' } });
  });

  it('reports text that is neither as YAML, naming the variable', () => {
    expect(() => parseConfigEnvText('{"service": ', 'MESHLET_CONFIG')).toThrow(/^MESHLET_CONFIG\.yaml: not valid YAML/);
  });
});
