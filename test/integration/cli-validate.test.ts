import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const MAIN = new URL('../../sidecar/main.ts', import.meta.url).pathname;

describe('meshlet validate', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints the effective config with secrets redacted', async () => {
    dir = await mkdtemp(join(tmpdir(), 'meshlet-validate-'));
    const file = join(dir, 'meshlet.yaml');
    await writeFile(file, 'service: { name: web, port: 8080 }\ndiscovery:\n  consul: { address: "127.0.0.1:8500", token: "s3cret-acl-token" }\n');
    const { stdout } = await run(process.execPath, [MAIN, 'validate', '--config', file]);
    expect(stdout).not.toContain('s3cret-acl-token');
    const printed = JSON.parse(stdout);
    expect(printed.discovery.consul.token).toBe('[redacted]');
    expect(printed.inbound.port).toBe(15001);
  });

  it('reads the config from an environment variable with --config-env', async () => {
    const { stdout } = await run(process.execPath, [MAIN, 'validate', '--config-env', 'MESHLET_CONFIG'], { env: { ...process.env, MESHLET_CONFIG: '{"service":{"name":"web","port":8080}}' } });
    expect(JSON.parse(stdout).service).toMatchObject({ name: 'web', port: 8080 });
    await expect(run(process.execPath, [MAIN, 'validate', '--config-env', 'MESHLET_CONFIG'], { env: { ...process.env, MESHLET_CONFIG: '{"service":{"name":"web","port":"x"}}' } })).rejects.toMatchObject({
      stderr: expect.stringMatching(/service\.port: expected integer 1-65535, got "x" \(\$MESHLET_CONFIG\)/),
    });
  });
});
