/** The shipped examples stay valid and match what the README and the Dockerfile say about them. */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { IMAGE_CLI } from '../../injector/spec.ts';
import { loadConfigFile } from '../../sidecar/config/load.ts';
import { parseCatalog } from '../../sidecar/discovery/file.ts';

const root = new URL('../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const abs = (path: string) => new URL(path, root).pathname;

describe('examples', () => {
  it('examples/meshlet.yaml validates, with its catalog path resolved next to it', async () => {
    const config = await loadConfigFile(abs('examples/meshlet.yaml'));
    expect(config.service).toMatchObject({ name: 'frontend', port: 8080 });
    expect(config.inbound.port).toBe(15001);
    expect(config.upstreams).toMatchObject([{ name: 'greeter', port: 9001, balancer: 'least_request' }]);
    expect(config.discovery.file?.path).toBe(abs('examples/catalog.yaml'));
  });

  it('examples/catalog.yaml is a valid catalog', () => {
    const services = parseCatalog(read('examples/catalog.yaml'), abs('examples/catalog.yaml'));
    expect([...services.keys()]).toEqual(['greeter']);
    expect(services.get('greeter')!.map((e) => `${e.key} w${e.weight}`)).toEqual(['127.0.0.1:15101 w2', '127.0.0.1:15102 w1']);
  });

  it("the README's minimal config is examples/meshlet.yaml", () => {
    const readme = read('README.md');
    const at = readme.indexOf('(`examples/meshlet.yaml`)');
    expect(at).toBeGreaterThan(0);
    const block = /```yaml\n([\s\S]*?)```/.exec(readme.slice(at))![1]!;
    const example = read('examples/meshlet.yaml').split('\n').filter((line) => !line.startsWith('#')).join('\n');
    expect(block.trim()).toBe(example.trim());
  });

  it('the Dockerfile runs the CLI sidecar on /etc/meshlet/meshlet.yaml as a non-root user', () => {
    const dockerfile = read('Dockerfile');
    expect(dockerfile).toMatch(/^FROM node:24-slim$/m);
    expect(dockerfile).toMatch(/^USER node$/m);
    // The injector's probes exec the image's CLI: both must name the same command.
    const entrypoint = /^ENTRYPOINT (.*)$/m.exec(dockerfile)?.[1];
    expect(JSON.parse(entrypoint ?? 'null')).toEqual([...IMAGE_CLI]);
    expect(dockerfile).toContain('CMD ["sidecar", "--config", "/etc/meshlet/meshlet.yaml"]');
    // What the image copies and runs exists in the tree.
    for (const path of ['bin/meshlet.js', 'sidecar/main.ts', 'examples/meshlet.yaml', 'examples/catalog.yaml', 'package-lock.json']) expect(existsSync(abs(path)), path).toBe(true);
  });

  it('every package the runtime imports is a dependency (the image installs with --omit=dev)', () => {
    const { dependencies } = JSON.parse(read('package.json')) as { dependencies: Record<string, string> };
    const missing = new Set<string>();
    for (const dir of ['sidecar', 'certs', 'injector', 'examples', 'bin']) {
      for (const file of readdirSync(abs(dir), { recursive: true, encoding: 'utf8' })) {
        if (!/\.(ts|js)$/.test(file)) continue;
        const text = read(`${dir}/${file}`);
        const statics = text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gms);
        const dynamics = text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g);
        for (const m of [...statics, ...dynamics]) {
          const spec = m[1]!;
          if (spec.startsWith('node:') || spec.startsWith('.')) continue;
          const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
          if (!(name in dependencies)) missing.add(`${name} (${dir}/${file})`);
        }
      }
    }
    expect([...missing]).toEqual([]);
  });
});
