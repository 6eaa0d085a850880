import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { adminUrl, eventually, startSidecar } from '../helpers/sidecar.ts';

async function reloadCount(sidecar: Sidecar, result: 'ok' | 'rejected'): Promise<number> {
  const res = await request(`${adminUrl(sidecar)}/metrics`);
  const text = await res.body.text();
  const line = text.split('\n').find((l) => l.startsWith(`meshlet_config_reloads_total{source="catalog",result="${result}"}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('catalog reloads are reported', () => {
  let dir: string;
  let sidecar: Sidecar | undefined;
  afterEach(async () => {
    await sidecar?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('emits configReload for applied and rejected catalog edits, counted in /metrics', async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-catalog-'));
    const catalog = join(dir, 'catalog.yaml');
    await writeFile(catalog, 'services:\n  api:\n    - { address: 127.0.0.1, port: 9001 }\n');
    sidecar = await startSidecar({ service: { name: 'web', port: 8080 }, upstreams: [{ name: 'api' }], discovery: { file: { path: catalog } } });
    const seen: Array<{ source: string; ok: boolean; error?: string }> = [];
    sidecar.events.on('configReload', (e) => seen.push(e));

    await writeFile(catalog, 'services:\n  api:\n    - { address: 127.0.0.1, port: 9002 }\n');
    await eventually('applied reload event', () => seen.some((e) => e.ok));
    await writeFile(catalog, 'services:\n  api:\n    - { address: 127.0.0.1, port: nope }\n');
    await eventually('rejected reload event', () => seen.some((e) => !e.ok));

    expect(seen.find((e) => !e.ok)?.error).toMatch(/services\.api\[0\]\.port/);
    expect(seen.every((e) => e.source === 'catalog')).toBe(true);
    expect(await reloadCount(sidecar, 'ok')).toBe(1);
    expect(await reloadCount(sidecar, 'rejected')).toBe(1);
    expect(sidecar.clusters.get('api')!.endpoints.map((s) => s.key)).toEqual(['127.0.0.1:9002']);
  });
});
