/**
 * Profiles Meshlet's HTTP/1.1 hot path: nginx backend, Meshlet under `node --cpu-prof` on its own CPU,
 * wrk keep-alive load, then a self-time summary per profiled process.
 *   node bench/profile.ts [SECONDS] [--two-hop] [--close]
 * --two-hop profiles an outbound and an inbound sidecar with mTLS between them (local CA), both on CPU 1.
 * --close sends `Connection: close` (a new client connection per request, the bench's third workload).
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { meshletConfig, nginxBackend, SMALL_PATH } from './lib/configs.ts';
import { freePort, run, start, stop, waitForPort, type Proc } from './lib/procs.ts';
import { wrk } from './lib/wrk.ts';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'sidecar', 'main.ts');
const seconds = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 10);
const twoHop = process.argv.includes('--two-hop');
const headers = process.argv.includes('--close') ? ['Connection: close'] : [];
const dir = join(ROOT, 'bench', 'results', 'tmp', `profile-${Date.now()}`);
mkdirSync(dir, { recursive: true });
const pinned = cpus().length >= 2;
const backendPort = await freePort();
const backend = start('nginx-backend', pinned ? '0' : undefined, 'nginx', ['-p', dir, '-c', nginxBackend(dir, backendPort)], join(dir, 'backend.log'));

async function sidecar(name: string, config: Record<string, unknown>): Promise<Proc> {
  const file = meshletConfig(dir, name, { inbound: { address: '127.0.0.1', port: await freePort() }, admin: { port: await freePort() }, ...config });
  const args = ['--expose-gc', '--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}.cpuprofile`, MAIN, 'sidecar', '--config', file];
  return start(name, pinned ? '1' : undefined, process.execPath, args, join(dir, `${name}.log`));
}

const port = await freePort();
const procs: Proc[] = [];
if (twoHop) {
  const caDir = join(dir, 'ca');
  await run(process.execPath, [MAIN, 'ca', 'init', '--dir', caDir]);
  const security = { mtls: true, ca: { dir: caDir } };
  const inboundPort = await freePort();
  procs.push(await sidecar('inbound', { service: { name: 'backend', port: backendPort }, inbound: { address: '127.0.0.1', port: inboundPort }, security }));
  await waitForPort(inboundPort, 'inbound sidecar');
  procs.push(await sidecar('outbound', { service: { name: 'bench-app', port: backendPort }, upstreams: [{ name: 'backend', port, endpoints: [{ address: '127.0.0.1', port: inboundPort }] }], security }));
} else {
  procs.push(await sidecar('meshlet', { service: { name: 'bench-app', port: backendPort }, upstreams: [{ name: 'backend', port, endpoints: [{ address: '127.0.0.1', port: backendPort }] }] }));
}
try {
  await waitForPort(backendPort, 'backend');
  await waitForPort(port, 'meshlet');
  // Warm the JIT first; the profile still includes start-up, which the summary shows apart.
  await wrk({ url: `http://127.0.0.1:${port}${SMALL_PATH}`, connections: 50, seconds: 2, headers, cpu: pinned ? '0' : undefined });
  const result = await wrk({ url: `http://127.0.0.1:${port}${SMALL_PATH}`, connections: 50, seconds, headers, cpu: pinned ? '0' : undefined });
  const errors = Object.values(result.errors).reduce((a, b) => a + b, 0);
  process.stdout.write(`load: ${result.rps.toFixed(0)} req/s, p99 ${(result.latencyUs.p99 / 1000).toFixed(2)} ms, errors ${errors}\n`);
} finally {
  for (const p of procs) await stop(p);
  await stop(backend);
}
for (const p of procs) {
  process.stdout.write(`\n##### ${p.name}\n`);
  process.stdout.write(await run(process.execPath, [join(import.meta.dirname, 'lib', 'profile-summary.ts'), join(dir, `${p.name}.cpuprofile`), '40']));
}
