/**
 * Bytes the sidecar allocates per proxied request, by file and function: a yardstick that does not
 * move with the machine's load, unlike req/s and CPU time (GC work and much of the per-request
 * JavaScript follow allocation). Runs Meshlet one hop (or `--h2`: an http2 upstream, h2load) under
 * load with V8's sampling heap profiler counting every allocation, collected ones included.
 * `--survivors` counts only what a scavenge did not collect, under the latency workload (10 connections,
 * 10 ms think time, where a request outlives several scavenges if anything holds it): per request this
 * should be near zero; a finished request kept alive until a full GC shows up here by function (it
 * once cost 35% of the young generation and 8-24 ms pauses, docs/performance.md).
 *   node bench/alloc.ts [--h2] [--survivors] [--seconds 4] [--top 30] [DIR]
 * DIR is the Meshlet checkout to measure (default: this one), so two checkouts can be compared.
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { meshletConfig, nginxBackend, SMALL_PATH } from './lib/configs.ts';
import { summarizeAllocations } from './lib/alloc-summary.ts';
import { runLoad } from './lib/load.ts';
import { freePort, start, stop, toolSetup, waitForPort } from './lib/procs.ts';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: { h2: { type: 'boolean', default: false }, survivors: { type: 'boolean', default: false }, seconds: { type: 'string', default: '4' }, top: { type: 'string', default: '30' } },
});
const seconds = Number(flags.seconds);
const checkout = resolve(positionals[0] ?? join(import.meta.dirname, '..'));
const { dir, pinned, loadCpu: LOAD } = toolSetup('alloc');

const backendPort = await freePort();
const backendH2Port = await freePort();
const backend = start('nginx-backend', LOAD, 'nginx', ['-p', dir, '-c', nginxBackend(dir, backendPort, backendH2Port)], join(dir, 'backend.log'));
const port = await freePort();
const profileFile = join(dir, 'alloc.heapprofile');
const config = meshletConfig(dir, 'meshlet', {
  service: { name: 'bench-app', port: backendPort },
  inbound: { address: '127.0.0.1', port: await freePort() },
  admin: { port: await freePort() },
  upstreams: [{ name: 'backend', port, ...(flags.h2 ? { protocol: 'http2' } : {}), endpoints: [{ address: '127.0.0.1', port: flags.h2 ? backendH2Port : backendPort }] }],
});
const args = ['--expose-gc', '--import', join(import.meta.dirname, 'lib', 'alloc-sampler.mjs'), join(checkout, 'sidecar', 'main.ts'), 'sidecar', '--config', config];
const meshlet = start('meshlet', pinned ? '1' : undefined, process.execPath, args, join(dir, 'meshlet.log'), { ...process.env, ALLOC_PROFILE_OUT: profileFile, ALLOC_SURVIVORS: flags.survivors ? '1' : '0' });

const url = `http://127.0.0.1:${port}${SMALL_PATH}`;
const latencyWorkload = flags.survivors && !flags.h2 ? { connections: 10, thinkMs: 10 } : {};
const load = async (secs: number): Promise<number> => (await runLoad({ url, seconds: secs, cpu: LOAD, h2: flags.h2, ...latencyWorkload })).requests;
let requests: number;
try {
  await waitForPort(backendPort, 'backend');
  await waitForPort(port, 'meshlet');
  await load(2); // JIT warm-up, pools filled: steady state only is measured
  meshlet.child.kill('SIGUSR2');
  await new Promise((r) => setTimeout(r, 300));
  requests = await load(seconds);
  meshlet.child.kill('SIGUSR2');
  await new Promise((r) => setTimeout(r, 1500));
} finally {
  await stop(meshlet);
  await stop(backend);
}
const summary = summarizeAllocations(profileFile, requests);
const top = Number(flags.top);
const kb = (n: number) => `${Math.round(n).toLocaleString('en-US').padStart(7)} B`;
const workload = flags.h2 ? 'HTTP/2 (h2load -c10 -m10)' : flags.survivors ? 'HTTP/1.1 keep-alive (wrk -c10, 10 ms think time)' : 'HTTP/1.1 keep-alive (wrk -c50)';
const what = flags.survivors ? 'allocated per request and not collected by a scavenge' : 'allocated per request';
const lines = [`${workload}, ${requests} requests, ${checkout}`, `${kb(summary.bytesPerRequest)} ${what}`, '', 'by file:'];
for (const [file, bytes] of summary.byFile.slice(0, 15)) lines.push(`${kb(bytes)}  ${file}`);
lines.push('', 'by function (self):');
for (const [fn, bytes] of summary.byFunction.slice(0, top)) lines.push(`${kb(bytes)}  ${fn}`);
process.stdout.write(`${lines.join('\n')}\n`);
