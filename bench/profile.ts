/**
 * Profiles Meshlet's HTTP/1.1 hot path: nginx backend, Meshlet under `node --cpu-prof` on its own CPU,
 * wrk keep-alive load, then a self-time summary per profiled process.
 *   node bench/profile.ts [SECONDS] [--two-hop] [--close] [--h2]
 * --two-hop profiles an outbound and an inbound sidecar with mTLS between them (local CA), both on CPU 1.
 * --close sends `Connection: close` (a new client connection per request, the bench's third workload).
 * --h2 profiles one hop of HTTP/2: h2load (10 clients x 10 streams, h2c) to an `http2` upstream (nginx h2c).
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { meshletConfig, nginxBackend, SMALL_PATH } from './lib/configs.ts';
import { freePort, run, start, stop, waitForPort, type Proc } from './lib/procs.ts';
import { runLoad } from './lib/load.ts';

const ROOT = join(import.meta.dirname, '..');
const MAIN = join(ROOT, 'sidecar', 'main.ts');
const seconds = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) ?? 10);
const twoHop = process.argv.includes('--two-hop');
const headers = process.argv.includes('--close') ? ['Connection: close'] : [];
const h2 = process.argv.includes('--h2');
const dir = join(ROOT, 'bench', 'results', 'tmp', `profile-${Date.now()}`);
mkdirSync(dir, { recursive: true });
const pinned = cpus().length >= 2;
const backendPort = await freePort();
const backendH2Port = await freePort();
const backend = start('nginx-backend', pinned ? '0' : undefined, 'nginx', ['-p', dir, '-c', nginxBackend(dir, backendPort, backendH2Port)], join(dir, 'backend.log'));

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
  const upstream = h2 ? { protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: backendH2Port }] } : { endpoints: [{ address: '127.0.0.1', port: backendPort }] };
  procs.push(await sidecar('meshlet', { service: { name: 'bench-app', port: backendPort }, upstreams: [{ name: 'backend', port, ...upstream }] }));
}
try {
  await waitForPort(backendPort, 'backend');
  await waitForPort(port, 'meshlet');
  const url = `http://127.0.0.1:${port}${SMALL_PATH}`;
  const cpu = pinned ? '0' : undefined;
  // Warm the JIT first; the profile still includes start-up, which the summary shows apart.
  await runLoad({ url, seconds: 2, cpu, h2, headers });
  const result = await runLoad({ url, seconds, cpu, h2, headers });
  process.stdout.write(`load: ${result.rps.toFixed(0)} req/s${h2 ? ' (HTTP/2), mean' : ', p99'} ${result.latencyMs.toFixed(2)} ms, errors ${result.errors}\n`);
} finally {
  for (const p of procs) await stop(p);
  await stop(backend);
}
for (const p of procs) {
  process.stdout.write(`\n##### ${p.name}\n`);
  process.stdout.write(await run(process.execPath, [join(import.meta.dirname, 'lib', 'profile-summary.ts'), join(dir, `${p.name}.cpuprofile`), '40']));
}
