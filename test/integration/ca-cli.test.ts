/** `meshlet ca serve` and friends as real processes, the way an operator runs them. */
import { afterEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { runCli, stopCli, type CliProcess } from '../helpers/cli.ts';
import { createTestCa } from '../helpers/mesh-ca.ts';
import { eventually } from '../helpers/sidecar.ts';

describe('meshlet ca (CLI)', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  it('serves the CA API, picks up a rotation made by another process, and stops on SIGTERM', { timeout: 30_000 }, async () => {
    const ca = await createTestCa({ trustDomain: 'cli.test' });
    cleanup.push(() => ca.cleanup());
    const serve: CliProcess = runCli(['ca', 'serve', '--dir', ca.dir, '--port', '0']);
    cleanup.push(() => stopCli(serve));
    let port = 0;
    await eventually(
      'the CA API logs that it is serving',
      () => {
        const line = serve.stdout().split('\n').find((l) => l.includes('"CA API serving"'));
        if (line) port = (JSON.parse(line) as { port: number }).port;
        return port > 0;
      },
      20_000,
    );
    const bundle = await readFile(join(ca.dir, 'bundle.pem'), 'utf8');
    const dispatcher = new Agent({ connect: { ca: bundle } });
    cleanup.push(() => dispatcher.close());
    const roots = async () => {
      const res = await request(`https://127.0.0.1:${port}/v1/trust-bundle`, { dispatcher });
      return ((await res.body.json()) as { trustBundle: string }).trustBundle.match(/BEGIN CERTIFICATE/g)?.length ?? 0;
    };
    expect(await roots()).toBe(1);

    const rotate = runCli(['ca', 'rotate', '--dir', ca.dir, '--activate-in', '1h']);
    expect(await rotate.exited).toBe(0);
    expect(rotate.stdout()).toMatch(/added root generation #2; in the trust bundle now, signing from /);
    expect(await roots()).toBe(2);

    const retire = runCli(['ca', 'retire', '--dir', ca.dir]);
    expect(await retire.exited).toBe(1);
    expect(retire.stderr()).toContain('nothing to retire');

    expect(await stopCli(serve)).toBe(0);
  });

  it('prints usage for --help and exits 2 on an unknown subcommand or a missing flag', async () => {
    const help = runCli(['ca', '--help']);
    expect(await help.exited).toBe(0);
    expect(help.stdout()).toContain('meshlet ca token create --dir D --service NAME');
    const unknown = runCli(['ca', 'frobnicate']);
    expect(await unknown.exited).toBe(2);
    expect(unknown.stderr()).toContain('unknown subcommand "frobnicate"');
    const missing = runCli(['ca', 'token', 'create', '--dir', '/nonexistent']);
    expect(await missing.exited).toBe(2);
    expect(missing.stderr()).toContain('--service is required');
  });
});
