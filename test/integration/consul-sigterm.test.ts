/** The real CLI, run as users run it, deregisters from Consul when it gets SIGTERM, then drains and exits 0. */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { startConsulServer } from '../fixtures/consul-server.ts';
import { eventually } from '../helpers/sidecar.ts';

const MAIN = fileURLToPath(new URL('../../sidecar/main.ts', import.meta.url));

describe('Consul deregistration on SIGTERM', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  it('a CLI sidecar registered in Consul deregisters on SIGTERM before it drains, then exits 0', async () => {
    const server = await startConsulServer();
    cleanup.push(() => server.close());
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-consul-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const configPath = join(dir, 'meshlet.yaml');
    await writeFile(
      configPath,
      [
        'service: { name: billing, port: 9 }',
        'inbound: { address: 127.0.0.1, port: 0 }',
        'admin: { address: 127.0.0.1, port: 0 }',
        'shutdown: { drainTimeout: 2s }',
        'discovery:',
        '  consul:',
        `    address: ${server.address}`,
        '    registration: { id: billing-cli, check: { kind: ttl, ttl: 10s } }',
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [MAIN, 'sidecar', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    const exited = new Promise<number | string>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? -1)));
    cleanup.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });

    await eventually(`registered and passing (stderr: ${err})`, () => server.catalog.checks.get('service:billing-cli')?.status === 'passing', 20_000);
    expect(server.service('billing-cli')?.def.name).toBe('billing');

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(server.service('billing-cli')).toBeUndefined();
    expect(server.requestsTo('/v1/agent/service/deregister/billing-cli').map((r) => r.status)).toEqual([200]);
    const messages = out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => (JSON.parse(l) as { msg: string }).msg);
    const deregistered = messages.indexOf('deregistered from consul');
    expect(deregistered, messages.join(' | ')).toBeGreaterThan(messages.indexOf('signal received'));
    expect(deregistered, out).toBeLessThan(messages.indexOf('stopped'));
  });
});
