import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { freePort } from '../../examples/demo.ts';
import { startBackend } from '../helpers/backend.ts';
import { eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

async function getJson<T>(url: string): Promise<T> {
  const res = await request(url);
  return (await res.body.json()) as T;
}

interface TargetsResponse {
  data: { activeTargets: Array<{ scrapeUrl: string; health: 'up' | 'down' | 'unknown'; lastError: string }> };
}
interface QueryResponse {
  data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

describe('a real Prometheus server scraping /metrics', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  it('reports the sidecar target up and ingests its request counters', { timeout: 60_000 }, async () => {
    const version = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
    // .ci/run installs the Debian package; a missing binary is a failure, not a skip.
    expect(version.error, 'prometheus binary not found: apt-get install -y prometheus').toBeUndefined();

    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'greeter', port: app.port } });
    cleanup.push(() => server.stop());
    const client = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }] }],
    });
    cleanup.push(() => client.stop());
    for (let i = 0; i < 3; i++) await (await request(`${upstreamUrl(client, 'greeter')}/p${i}`)).body.text();

    const dir = await mkdtemp(join(tmpdir(), 'meshlet-prometheus-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const target = `127.0.0.1:${client.ports.admin}`;
    await writeFile(
      join(dir, 'prometheus.yml'),
      ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', 'scrape_configs:', '  - job_name: meshlet', '    static_configs:', `      - targets: ['${target}']`, ''].join('\n'),
    );
    const port = await freePort();
    const prometheus: ChildProcess = spawn(
      'prometheus',
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    prometheus.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<void>((resolve) => prometheus.once('exit', () => resolve()));
    cleanup.push(async () => {
      prometheus.kill('SIGTERM');
      await exited;
    });

    const api = `http://127.0.0.1:${port}/api/v1`;
    let last: TargetsResponse['data']['activeTargets'] = [];
    const targetUp = async () => {
      if (prometheus.exitCode !== null) throw new Error(`prometheus exited ${prometheus.exitCode}: ${stderr.slice(-2000)}`);
      try {
        last = (await getJson<TargetsResponse>(`${api}/targets`)).data.activeTargets;
      } catch {
        return false; // not listening yet
      }
      return last.some((t) => t.scrapeUrl === `http://${target}/metrics` && t.health === 'up');
    };
    await eventually(`Prometheus reports ${target} up`, targetUp, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}; targets: ${JSON.stringify(last)}; stderr: ${stderr.slice(-1000)}`);
    });
    expect(last.find((t) => t.scrapeUrl === `http://${target}/metrics`)?.lastError).toBe('');

    const query = encodeURIComponent('meshlet_requests_total{direction="outbound",upstream="greeter",code_class="2xx"}');
    let result: QueryResponse['data']['result'] = [];
    await eventually('Prometheus has ingested meshlet_requests_total', async () => {
      result = (await getJson<QueryResponse>(`${api}/query?query=${query}`)).data.result;
      return result.length > 0;
    }, 15_000);
    expect(Number(result[0]!.value[1])).toBe(3);
    const histogram = encodeURIComponent('meshlet_request_duration_seconds_count{upstream="greeter"}');
    const counts = (await getJson<QueryResponse>(`${api}/query?query=${histogram}`)).data.result;
    expect(counts.map((r) => Number(r.value[1]))).toEqual([3]);
  });
});
