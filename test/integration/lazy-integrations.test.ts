/**
 * Idle memory: a sidecar loads Consul, ACME, mTLS (node-forge) and OpenTelemetry code only when its
 * config turns them on; the YAML parser only for YAML text; prom-client's default process metrics (and
 * the @opentelemetry/api they load) only once scraped. Runs the real launcher with a resolve hook that records every module
 * (bench/memory/record-modules.mjs) and reads the list once the sidecar is ready.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../examples/demo.ts';
import { eventually } from '../helpers/sidecar.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const OPTIONAL = [
  '/node_modules/consul/',
  '/node_modules/acme-client/',
  '/node_modules/node-forge/',
  '/node_modules/@opentelemetry/sdk-trace-base/',
  '/node_modules/@opentelemetry/exporter-trace-otlp-http/',
  '/node_modules/@opentelemetry/api/',
  '/node_modules/yaml/',
  '/node_modules/prom-client/index.js',
  '/node_modules/prom-client/lib/defaultMetrics.js',
  '/node_modules/prom-client/lib/pushgateway.js',
  '/node_modules/prom-client/lib/cluster.js',
  // Node's bundled undici (fetch, WebSocket): an ESM import of node:http loads it (sidecar/node-http.ts).
  'node-internal:internal/deps/undici/undici',
  // node:cluster, with child_process and dgram: only a sidecar with workers > 1 needs it.
  'node:cluster',
];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-lazy-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
const children: ChildProcess[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
});

/**
 * Starts the launcher on `config` (written as JSON, or YAML with `format`), waits for /ready, calls
 * `beforeList` with the admin port, and returns the modules it resolved.
 */
async function modulesLoaded(name: string, extra: Record<string, unknown>, format: 'json' | 'yaml' = 'json', beforeList?: (admin: number) => Promise<void>): Promise<string[]> {
  const admin = await freePort();
  const config = {
    service: { name: 'lazy', port: await freePort() },
    inbound: { address: '127.0.0.1', port: await freePort() },
    admin: { address: '127.0.0.1', port: admin },
    upstreams: [{ name: 'peer', port: await freePort(), endpoints: [{ address: '127.0.0.1', port: await freePort() }] }],
    logging: { level: 'silent', accessLog: false },
    ...extra,
  };
  const file = join(dir, `${name}.${format}`);
  const list = join(dir, `${name}.modules`);
  // JSON text is valid YAML: the file's extension alone decides which parser reads it.
  await writeFile(file, JSON.stringify(config));
  const child = spawn(process.execPath, ['--import', join(ROOT, 'bench', 'memory', 'record-modules.mjs'), join(ROOT, 'bin', 'meshlet.js'), 'sidecar', '--config', file], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MESHLET_MODULE_LIST: list },
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  await eventually(`${name} sidecar ready (${stderr})`, async () => {
    if (child.exitCode !== null) throw new Error(`sidecar exited ${child.exitCode}: ${stderr}`);
    try {
      return (await fetch(`http://127.0.0.1:${admin}/ready`)).status === 200;
    } catch {
      return false;
    }
  }, 20_000);
  await beforeList?.(admin);
  child.kill('SIGUSR2');
  let text = '';
  // Generous: on a loaded machine (the whole suite on two cores) the signal and the write can take seconds.
  await eventually('module list written', async () => {
    text = await readFile(list, 'utf8').catch(() => '');
    return text.length > 0;
  }, 20_000);
  return text.trim().split('\n');
}

describe('integrations load only when configured', () => {
  it('a minimal sidecar loads no Consul, ACME, node-forge, OpenTelemetry SDK, undici or cluster code', async () => {
    const modules = await modulesLoaded('minimal', {});
    expect(modules.some((url) => url.endsWith('/sidecar/sidecar.ts'))).toBe(true);
    for (const pkg of OPTIONAL) expect(modules.filter((url) => url.includes(pkg)), pkg).toEqual([]);
  }, 30_000);

  it('a YAML config loads the YAML parser', async () => {
    const modules = await modulesLoaded('yaml-config', {}, 'yaml');
    expect(modules.some((url) => url.includes('/node_modules/yaml/'))).toBe(true);
  }, 30_000);

  it('the first /metrics scrape loads the default process metrics and serves them', async () => {
    let text = '';
    const modules = await modulesLoaded('scraped', {}, 'json', async (admin) => {
      text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    });
    expect(modules.some((url) => url.includes('/node_modules/prom-client/lib/defaultMetrics.js'))).toBe(true);
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('meshlet_info');
  }, 30_000);

  it('with tracing on, the OpenTelemetry SDK and exporter are loaded', async () => {
    const modules = await modulesLoaded('tracing', { telemetry: { tracing: { endpoint: `http://127.0.0.1:${await freePort()}/v1/traces` } } });
    expect(modules.some((url) => url.includes('/node_modules/@opentelemetry/sdk-trace-base/'))).toBe(true);
    expect(modules.some((url) => url.includes('/node_modules/@opentelemetry/exporter-trace-otlp-http/'))).toBe(true);
    expect(modules.filter((url) => url.includes('/node_modules/consul/'))).toEqual([]);
  }, 30_000);
});
