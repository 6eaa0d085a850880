/**
 * `workers: 2` runs the sidecar as a primary and two worker processes sharing the listeners: requests
 * are served, a crashed worker is replaced, SIGTERM stops everything, and a worker that cannot start
 * stops the sidecar instead of looping.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { alive, runCli, startCliSidecar, stopCli, type CliProcess } from '../helpers/cli.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { eventually } from '../helpers/sidecar.ts';

interface ServingLine {
  ports: { admin: number; inbound: number; upstreams: Record<string, number> };
}

function servingLines(proc: CliProcess): ServingLine[] {
  return proc
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"sidecar serving"'))
    .map((l) => JSON.parse(l) as ServingLine);
}

/** Worker pids from each "all workers serving" line of the primary. */
function workerPids(proc: CliProcess): number[][] {
  return proc
    .stdout()
    .split('\n')
    .filter((l) => l.includes('"all workers serving"'))
    .map((l) => (JSON.parse(l) as { pids: number[] }).pids);
}

describe('workers (node:cluster)', () => {
  let dir: string | undefined;
  let backend: TestBackend | undefined;
  let proc: CliProcess | undefined;
  let blocker: Server | undefined;

  afterEach(async () => {
    if (proc && proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
    await backend?.close();
    if (blocker) await new Promise<void>((resolve) => blocker!.close(() => resolve()));
    if (dir) await rm(dir, { recursive: true, force: true });
    proc = backend = blocker = dir = undefined;
  });

  async function configFile(lines: string[]): Promise<string> {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-workers-'));
    const file = join(dir, 'meshlet.yaml');
    await writeFile(file, lines.join('\n'));
    return file;
  }

  it('serves from two processes sharing the ports, replaces a crashed worker, and stops on SIGTERM', async () => {
    backend = await startBackend('greeter');
    const config = await configFile([
      'service: { name: app, port: 1 }',
      'inbound: { address: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      'workers: 2',
      'logging: { level: info, accessLog: false }',
      'upstreams:',
      `  - { name: greeter, port: 0, endpoints: [{ address: 127.0.0.1, port: ${backend.port} }] }`,
    ]);
    const sidecar = await startCliSidecar(config);
    proc = sidecar;
    await eventually('both workers serving', () => workerPids(sidecar).length === 1, 20_000);
    const [pids] = workerPids(sidecar) as [number[]];
    expect(pids).toHaveLength(2);
    expect(new Set(pids).size).toBe(2);
    expect(pids).not.toContain(sidecar.child.pid);
    expect(pids.every(alive)).toBe(true);
    // Shared listeners: both workers report the same ports, even where the config says 0. Each worker
    // writes its own log line, which may reach us after the primary's "workers serving" line.
    await eventually('both workers logged their ports', () => servingLines(sidecar).length >= 2, 20_000);
    const [first, second] = servingLines(sidecar) as [ServingLine, ServingLine];
    expect(second.ports).toEqual(first.ports);
    const url = `http://127.0.0.1:${first.ports.upstreams.greeter}/hello`;

    const callAll = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const res = await request(url, { headers: { connection: 'close' } });
        expect(res.statusCode).toBe(200);
        expect(await res.body.json()).toMatchObject({ backend: 'greeter', url: '/hello' });
      }
    };
    await callAll(10);
    expect(backend.hits).toBe(10);

    const [crashed, survivor] = pids as [number, number];
    process.kill(crashed, 'SIGKILL');
    await eventually('a replacement worker serving', () => workerPids(sidecar).length === 2, 20_000);
    const after = workerPids(sidecar)[1]!;
    expect(after).toContain(survivor);
    expect(after).not.toContain(crashed);
    const replacement = after.find((pid) => pid !== survivor)!;
    await eventually('the replacement logged its ports', () => servingLines(sidecar).length >= 3, 20_000);
    expect(servingLines(sidecar)[2]!.ports).toEqual(first.ports);
    await callAll(10);
    expect(backend.hits).toBe(20);

    expect(await stopCli(sidecar)).toBe(0);
    expect(alive(survivor)).toBe(false);
    expect(alive(replacement)).toBe(false);
  });

  it('stops with a failure, without restart loops, when workers cannot bind their port', async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker!.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as { port: number }).port;
    const config = await configFile([
      'service: { name: app, port: 1 }',
      'inbound: { address: 127.0.0.1, port: 0 }',
      'admin: { port: 0 }',
      'workers: 2',
      'logging: { level: info, accessLog: false }',
      `upstreams: [{ name: greeter, port: ${taken}, endpoints: [{ address: 127.0.0.1, port: 1 }] }]`,
      // Bounds the primary's wait: a worker stuck stopping is killed after drainTimeout + 10 s.
      'shutdown: { drainTimeout: 2s }',
    ]);
    proc = runCli(['sidecar', '--config', config]);
    expect(await proc.exited).toBe(1);
    expect(proc.stdout()).toContain('worker failed before serving');
    expect(proc.stdout()).not.toContain('starting a replacement');
  });
});
