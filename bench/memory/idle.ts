/**
 * Idle memory of a sidecar: starts `node bin/meshlet.js sidecar --config <config>` for a minimal config
 * (one static upstream, nothing optional) and an "everything on" config (Consul discovery and
 * registration, OTLP tracing, mTLS from a local CA), waits for admin /ready, lets it settle, and reads
 * VmRSS from /proc/<pid>/status. With --modules, also lists the packages each config loaded (a
 * resolve hook, bench/memory/record-modules.mjs) with their file counts.
 *
 *   node bench/memory/idle.ts [--starts N] [--modules] [--node-flag=--max-semi-space-size=1 ...]
 *
 * Each config is started N times (default 3) after one warm-up start that fills the compile cache; the
 * median is reported. Nothing listens on the Consul or OTLP addresses: both integrations are configured
 * and started, and retry in the background, which is what an idle sidecar does between polls.
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, rssBytes } from '../lib/procs.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const { values: flags } = parseArgs({
  options: {
    starts: { type: 'string', default: '3' },
    modules: { type: 'boolean', default: false },
    'node-flag': { type: 'string', multiple: true, default: [] },
    only: { type: 'string' },
  },
});
const starts = Math.max(1, Number(flags.starts));
const dir = mkdtempSync(join(tmpdir(), 'meshlet-idle-'));

async function baseConfig(): Promise<Record<string, unknown>> {
  return {
    service: { name: 'idle', port: await freePort() },
    inbound: { address: '127.0.0.1', port: await freePort() },
    upstreams: [{ name: 'peer', port: await freePort(), endpoints: [{ address: '127.0.0.1', port: await freePort() }] }],
    admin: { address: '127.0.0.1', port: await freePort() },
    logging: { level: 'warn', accessLog: false },
  };
}

async function everythingConfig(): Promise<Record<string, unknown>> {
  const caDir = join(dir, 'ca');
  execFileSync(process.execPath, [join(ROOT, 'bin', 'meshlet.js'), 'ca', 'init', '--dir', caDir], { stdio: 'ignore' });
  const base = await baseConfig();
  return {
    ...base,
    discovery: { consul: { address: `127.0.0.1:${await freePort()}` } },
    telemetry: { tracing: { endpoint: `http://127.0.0.1:${await freePort()}/v1/traces` } },
    security: { mtls: true, ca: { dir: caDir }, plaintextUpstreams: ['peer'] },
  };
}

async function waitReady(port: number, child: ReturnType<typeof spawn>): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sidecar exited with ${child.exitCode}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/ready`);
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('sidecar not ready within 30 s');
}

interface Sample {
  rss: number;
  modules?: string[];
}

async function measure(name: string, config: Record<string, unknown>, withModules: boolean): Promise<Sample> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config));
  const list = join(dir, `${name}.modules`);
  // --expose-gc: as the launcher's shebang and the image start it (trimMemory needs it).
  const args = ['--expose-gc', ...flags['node-flag']];
  if (withModules) args.push('--import', join(import.meta.dirname, 'record-modules.mjs'));
  args.push(join(ROOT, 'bin', 'meshlet.js'), 'sidecar', '--config', file);
  let stderr = '';
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MESHLET_MODULE_LIST: list } });
  child.stderr!.on('data', (d) => (stderr += d));
  try {
    await waitReady((config.admin as { port: number }).port, child);
    await new Promise((r) => setTimeout(r, 1500)); // settle: timers armed, first background polls done
    const rss = rssBytes(child.pid!);
    if (rss === undefined) throw new Error('sidecar gone');
    let modules: string[] | undefined;
    if (withModules) {
      child.kill('SIGUSR2');
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        try {
          modules = readFileSync(list, 'utf8').trim().split('\n');
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    return { rss, modules };
  } catch (err) {
    throw new Error(`${name}: ${(err as Error).message}\n${stderr}`);
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}

function packageOf(url: string): string {
  if (url.startsWith('node:')) return 'node: builtins';
  if (url.startsWith('node-internal:')) return 'node internals (loaded by builtins)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  const own = url.replace(`file://${ROOT}/`, '');
  return own.split('/').slice(0, 2).join('/');
}

const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
const configs: [string, () => Promise<Record<string, unknown>>][] = [
  ['minimal', baseConfig],
  ['everything', everythingConfig],
];
try {
  for (const [name, make] of configs) {
    if (flags.only && flags.only !== name) continue;
    const config = await make();
    await measure(name, config, false); // warm-up: fills the compile cache
    const samples: number[] = [];
    for (let i = 0; i < starts; i++) samples.push((await measure(name, config, false)).rss);
    samples.sort((a, b) => a - b);
    const median = samples[Math.floor(samples.length / 2)]!;
    console.log(`${name}: idle RSS median ${mib(median)} MiB (starts: ${samples.map(mib).join(', ')} MiB)`);
    if (flags.modules) {
      const { modules = [] } = await measure(name, config, true);
      const counts = new Map<string, number>();
      for (const url of modules) counts.set(packageOf(url), (counts.get(packageOf(url)) ?? 0) + 1);
      const rows = [...counts].sort((a, b) => b[1] - a[1]);
      console.log(`  ${modules.length} modules loaded:`);
      for (const [pkg, n] of rows) console.log(`    ${String(n).padStart(4)}  ${pkg}`);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
