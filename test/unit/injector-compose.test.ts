import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { injectCompose } from '../../injector/compose.ts';
import { validateConfig } from '../../sidecar/config/load.ts';

const COMPOSE = `
services:
  frontend:
    image: shop/frontend
    ports: ["8080:3000"]
    labels:
      meshlet.io/inject: "true"
      meshlet.io/upstreams: greeter:9001
    environment: [NODE_ENV=production]
  greeter:
    image: shop/greeter
    expose: ["8081"]
    labels: ["meshlet.io/inject=true"]
  redis:
    image: redis
`;

describe('docker-compose injection', () => {
  it('adds a sidecar sharing each labelled service network and points upstreams at peers by service name', () => {
    const { yaml, injected } = injectCompose(COMPOSE);
    expect(injected).toEqual(['frontend', 'greeter']);
    const doc = parse(yaml);
    const sidecar = doc.services['frontend-meshlet'];
    expect(sidecar).toMatchObject({ network_mode: 'service:frontend', command: ['sidecar', '--config-env', 'MESHLET_CONFIG'], depends_on: ['frontend'] });
    const config = validateConfig(JSON.parse(sidecar.environment.MESHLET_CONFIG), 'env');
    expect(config.service.port).toBe(3000);
    expect(config.upstreams[0]!.endpoints).toEqual([{ address: 'greeter', port: 15001, weight: 1, tags: [] }]);
    expect(doc.services.frontend.environment).toEqual(['NODE_ENV=production', 'MESHLET_UPSTREAM_GREETER_URL=http://127.0.0.1:9001']);
    expect(validateConfig(JSON.parse(doc.services['greeter-meshlet'].environment.MESHLET_CONFIG), 'env').service.port).toBe(8081);
    expect(doc.services['redis-meshlet']).toBeUndefined();
    expect(injectCompose(yaml).injected).toEqual([]);
  });

  it('refuses an upstream that is not a meshed service of the file, naming both', () => {
    expect(() => injectCompose(COMPOSE.replace('greeter:9001', 'billing:9001'))).toThrow(/service frontend: upstream "billing" is not an injected service/);
  });

  it('refuses a service that already uses another network namespace', () => {
    expect(() => injectCompose(COMPOSE.replace('image: shop/greeter', 'image: shop/greeter\n    network_mode: host'))).toThrow(/service greeter: has network_mode "host"/);
  });

  it('reports a file that is not a compose file', () => {
    expect(() => injectCompose('version: "3"\n')).toThrow(/no "services" map/);
    expect(() => injectCompose('services: [')).toThrow(/not valid YAML/);
  });
});
