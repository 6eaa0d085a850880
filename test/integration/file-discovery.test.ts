/**
 * The file catalog provider under live traffic: edits are applied without restart while requests keep
 * flowing (none fails, traffic moves to the new endpoint), and a broken edit is ignored with the last
 * good catalog kept and the problem shown on the admin API.
 */
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

describe('file catalog discovery', () => {
  let dir: string;
  let catalog: string;
  let a: TestBackend;
  let b: TestBackend;
  let sidecar: Sidecar;
  const dispatcher = new Agent({ connections: 8 });

  /** Writes the catalog the way editors and config tools do: a temp file renamed over the old one. */
  async function writeCatalog(text: string): Promise<void> {
    const tmp = `${catalog}.tmp`;
    await writeFile(tmp, text);
    await rename(tmp, catalog);
  }
  const catalogFor = (backend: TestBackend) => `services:\n  greeter:\n    - { address: 127.0.0.1, port: ${backend.port} }\n`;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-catalog-'));
    catalog = join(dir, 'catalog.yaml');
    a = await startBackend('a');
    b = await startBackend('b');
    await writeCatalog(catalogFor(a));
    sidecar = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'greeter' }], discovery: { file: { path: catalog } } });
  });

  afterEach(async () => {
    await sidecar.stop();
    await Promise.all([a.close(), b.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs `workers` request loops until `stop()`; returns status counts and per-backend answers. */
  function traffic(workers: number) {
    let running = true;
    const statuses = new Map<number, number>();
    const failures: string[] = [];
    const answeredBy: string[] = [];
    const loops = Array.from({ length: workers }, async () => {
      while (running) {
        try {
          const res = await request(`${upstreamUrl(sidecar, 'greeter')}/hello`, { dispatcher });
          const body = (await res.body.json()) as { backend?: string };
          statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          if (res.statusCode !== 200) failures.push(`${res.statusCode} ${JSON.stringify(body)}`);
          else answeredBy.push(body.backend!);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    });
    return {
      answeredBy,
      failures,
      count: () => answeredBy.length + failures.length,
      stop: async () => {
        running = false;
        await Promise.all(loops);
        return statuses;
      },
    };
  }

  it('moves traffic to the new endpoint while requests flow, without one failure', async () => {
    const load = traffic(4);
    await eventually('traffic reaches a', () => a.hits >= 20);
    await writeCatalog(catalogFor(b));
    await eventually('traffic reaches b', () => b.hits >= 20, 10_000);
    const aHitsAfterSwitch = a.hits;
    const countAtSwitch = load.count();
    await eventually('more traffic after the switch', () => load.count() >= countAtSwitch + 40);
    await load.stop();
    expect(load.failures).toEqual([]);
    // Nothing new went to a once b had taken over (at most the requests already in flight).
    expect(a.hits - aHitsAfterSwitch).toBeLessThanOrEqual(4);
    expect(load.answeredBy.at(-1)).toBe('b');
    const endpoints = sidecar.clusters.get('greeter')!.endpoints.map((s) => s.key);
    expect(endpoints).toEqual([`127.0.0.1:${b.port}`]);
  });

  it('ignores a broken edit, keeps the last good catalog, and recovers when it is fixed', async () => {
    const load = traffic(2);
    await eventually('traffic reaches a', () => a.hits >= 10);
    await writeCatalog(`services:\n  greeter:\n    - { address: 127.0.0.1, port: abc }\n`);
    const status = async () => ((await (await request(`${adminUrl(sidecar)}/endpoints`)).body.json()) as { providers: Array<{ provider: string; state: string; lastError?: string }> }).providers.find((p) => p.provider === 'file')!;
    await eventually('the file provider reports the broken catalog', async () => (await status()).state === 'degraded');
    expect((await status()).lastError).toContain('services.greeter[0].port: expected integer 1-65535, got "abc" (catalog.yaml)');
    // Broken YAML syntax is ignored too.
    await writeCatalog('services: [greeter: {');
    await eventually('the syntax error is reported', async () => /catalog\.yaml: not valid YAML/.test((await status()).lastError ?? ''));
    const hitsWhileBroken = a.hits;
    await eventually('traffic still reaches a', () => a.hits >= hitsWhileBroken + 10);
    await writeCatalog(catalogFor(b));
    await eventually('traffic reaches b after the fix', () => b.hits >= 10, 10_000);
    await load.stop();
    expect(load.failures).toEqual([]);
    expect((await status()).state).toBe('ok');
  });

  it('applies an in-place rewrite (truncate and write) as well', async () => {
    await writeFile(catalog, catalogFor(b));
    await eventually('endpoint set switched to b', () => sidecar.clusters.get('greeter')!.endpoints[0]?.key === `127.0.0.1:${b.port}`);
    const res = await request(`${upstreamUrl(sidecar, 'greeter')}/hello`, { dispatcher });
    expect(await res.body.json()).toMatchObject({ backend: 'b' });
  });

  it('follows a Kubernetes ConfigMap volume update (the ..data symlink swap)', async () => {
    // The kubelet's layout: catalog.yaml -> ..data/catalog.yaml, ..data -> ..<timestamp>/; an update
    // writes a new timestamped directory and renames a fresh ..data symlink over the old one.
    const volume = join(dir, 'volume');
    await mkdir(join(volume, '..v1'), { recursive: true });
    await writeFile(join(volume, '..v1', 'catalog.yaml'), catalogFor(a));
    await symlink('..v1', join(volume, '..data'));
    await symlink('..data/catalog.yaml', join(volume, 'catalog.yaml'));
    const mounted = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'greeter' }], discovery: { file: { path: join(volume, 'catalog.yaml') } } });
    try {
      const key = () => mounted.clusters.get('greeter')!.endpoints[0]?.key;
      expect(key()).toBe(`127.0.0.1:${a.port}`);
      await mkdir(join(volume, '..v2'));
      await writeFile(join(volume, '..v2', 'catalog.yaml'), catalogFor(b));
      await symlink('..v2', join(volume, '..data_tmp'));
      await rename(join(volume, '..data_tmp'), join(volume, '..data'));
      await eventually('the ConfigMap update was applied', () => key() === `127.0.0.1:${b.port}`);
    } finally {
      await mounted.stop();
    }
  });

  it('waits for a catalog file that does not exist yet, and refuses a missing directory at start', async () => {
    const later = join(dir, 'later.yaml');
    const waiting = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'greeter' }], discovery: { file: { path: later } } });
    try {
      const before = await request(`${upstreamUrl(waiting, 'greeter')}/hello`, { dispatcher });
      expect(before.statusCode).toBe(503);
      expect(before.headers['x-meshlet-error']).toBe('discovery_unavailable');
      await before.body.dump();
      await writeFile(later, catalogFor(a));
      await eventually('the new catalog was loaded', () => waiting.clusters.get('greeter')!.endpoints.length === 1);
      const after = await request(`${upstreamUrl(waiting, 'greeter')}/hello`, { dispatcher });
      expect(await after.body.json()).toMatchObject({ backend: 'a' });
    } finally {
      await waiting.stop();
    }
    await expect(startSidecar({ service: { name: 'client', port: 1 }, discovery: { file: { path: join(dir, 'no-such-dir', 'c.yaml') } } })).rejects.toThrow(
      /^discovery\.file\.path: cannot watch directory .*no-such-dir: ENOENT/,
    );
  });

  it('answers 503 no_endpoint when the catalog lists the service with no endpoints', async () => {
    await writeCatalog('services:\n  greeter: []\n');
    await eventually('endpoint set emptied', () => sidecar.clusters.get('greeter')!.endpoints.length === 0);
    const res = await request(`${upstreamUrl(sidecar, 'greeter')}/hello`, { dispatcher });
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-meshlet-error']).toBe('no_endpoint');
    await res.body.dump();
  });
});
