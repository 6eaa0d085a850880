/**
 * Profiles Meshlet's one-hop HTTP/1.1 hot path: nginx backend, Meshlet under `node --cpu-prof` on its own
 * CPU, wrk keep-alive load for a while, then a self-time summary of the profile.
 *   node bench/profile.ts [SECONDS] [--two-hop]
 */
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { meshletConfig, nginxBackend, SMALL_PATH } from './lib/configs.ts';
import { freePort, run, start, stop, waitForPort } from './lib/procs.ts';
import { wrk } from './lib/wrk.ts';

const ROOT = join(import.meta.dirname, '..');
const seconds = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 10);
const dir = join(ROOT, 'bench', 'results', 'tmp', `profile-${Date.now()}`);
mkdirSync(dir, { recursive: true });
const two = cpus().length >= 2;
const backendPort = await freePort();
const port = await freePort();
const backend = start('nginx-backend', two ? '0' : undefined, 'nginx', ['-p', dir, '-c', nginxBackend(dir, backendPort)], join(dir, 'backend.log'));
const config = meshletConfig(dir, 'meshlet', {
  service: { name: 'bench-app', port: backendPort },
  inbound: { address: '127.0.0.1', port: await freePort() },
  admin: { port: await freePort() },
  upstreams: [{ name: 'backend', port, endpoints: [{ address: '127.0.0.1', port: backendPort }] }],
});
const meshlet = start(
  'meshlet',
  two ? '1' : undefined,
  process.execPath,
  ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-name=meshlet.cpuprofile', join(ROOT, 'sidecar', 'main.ts'), 'sidecar', '--config', config],
  join(dir, 'meshlet.log'),
);
try {
  await waitForPort(backendPort, 'backend');
  await waitForPort(port, 'meshlet');
  // Warm the JIT before profiling is worth reading; the profile still includes start-up (shown apart).
  await wrk({ url: `http://127.0.0.1:${port}${SMALL_PATH}`, connections: 50, seconds: 2, cpu: two ? '0' : undefined });
  const result = await wrk({ url: `http://127.0.0.1:${port}${SMALL_PATH}`, connections: 50, seconds, cpu: two ? '0' : undefined });
  process.stdout.write(`load: ${result.rps.toFixed(0)} req/s, p99 ${(result.latencyUs.p99 / 1000).toFixed(2)} ms\n`);
} finally {
  await stop(meshlet);
  await stop(backend);
}
process.stdout.write(await run(process.execPath, [join(import.meta.dirname, 'lib', 'profile-summary.ts'), join(dir, 'meshlet.cpuprofile'), '60']));
