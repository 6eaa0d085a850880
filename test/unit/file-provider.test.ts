import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileProvider } from '../../sidecar/discovery/file.ts';
import type { CatalogSnapshot } from '../../sidecar/discovery/types.ts';
import { silentLogger } from '../../sidecar/telemetry/logger.ts';

const catalog = (port: number) => `services:\n  greeter:\n    - { address: 127.0.0.1, port: ${port} }\n`;
const portsOf = (s: CatalogSnapshot) => s.services.get('greeter')!.map((e) => e.port);

describe('file provider reloads', () => {
  let dir: string;
  let path: string;
  let provider: FileProvider;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-fileprov-'));
    path = join(dir, 'catalog.yaml');
    await writeFile(path, catalog(1));
  });
  afterEach(async () => {
    await provider.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('never lets an older read win: overlapping reloads end on the newest file', async () => {
    const emitted: number[][] = [];
    // Reads finish in reverse order: the first (older content) is released only after the second.
    const held: Array<() => void> = [];
    let holdNext = false;
    const readText = async (file: string) => {
      const text = readFileSync(file, 'utf8');
      if (holdNext) {
        holdNext = false;
        await new Promise<void>((resolve) => held.push(resolve));
      }
      return text;
    };
    provider = new FileProvider(path, silentLogger(), undefined, readText);
    await provider.start((s) => emitted.push(portsOf(s)));
    writeFileSync(path, catalog(2));
    holdNext = true;
    const first = provider.reload(); // reads catalog 2, then waits
    writeFileSync(path, catalog(3));
    const second = provider.reload(); // must not read (and emit) before the first finished
    await new Promise((resolve) => setImmediate(resolve));
    held.shift()?.();
    await Promise.all([first, second]);
    expect(emitted).toEqual([[1], [2], [3]]);
  });

  it('keeps the last good catalog on a broken edit and reports it; a revert makes it healthy again', async () => {
    const emitted: number[][] = [];
    provider = new FileProvider(path, silentLogger());
    await provider.start((s) => emitted.push(portsOf(s)));
    writeFileSync(path, 'services:\n  greeter:\n    - { address: 127.0.0.1, port: 0 }\n');
    await provider.reload();
    expect(provider.status()).toMatchObject({ state: 'degraded', lastError: expect.stringContaining('services.greeter[0].port: expected integer 1-65535, got 0 (catalog.yaml)') });
    expect(emitted).toEqual([[1]]);
    writeFileSync(path, catalog(1));
    await provider.reload();
    expect(provider.status().state).toBe('ok');
    expect(emitted).toEqual([[1]]);
  });
});
