/**
 * Side-by-side benchmark: the same workloads, interleaved round by round, straight to an nginx backend
 * and through HAProxy, nginx, http-proxy, the Node floor proxy (bench/floor-proxy.js) and Meshlet (one
 * and two hops), plus an HAProxy TLS pair as the mTLS reference and, beside Meshlet's `workers: auto`
 * row, HAProxy with a thread per core. Writes markdown and JSON to bench/results/. Run through `npm run bench` (bench/run.sh).
 *
 *   node bench/run.ts [--quick] [--rounds N] [--only keepalive,latency,lockstep,newconn,body1m,tcp,h2] [--profile] [--compare DIR[=LABEL]]
 *
 * --compare adds a "Meshlet one hop" row run from another checkout DIR (e.g. `git archive` of an older
 * commit, with node_modules linked), interleaved with the rest: a before/after in one run.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { floorPairArgs, haproxy, haproxyThreads, haproxyTlsPair, LARGE_PATH, makeCerts, meshletCa, meshletConfig, meshletPairConfigs, nginxBackend, nginxProxy, SMALL_PATH } from './lib/configs.ts';
import { h2load, h2loadErrorCount } from './lib/h2load.ts';
import { freePort, killAll, pinnedArgv, rssBytes, rssTreeBytes, run, start, stop, waitForPort, type Proc } from './lib/procs.ts';
import { renderMarkdown, type BenchReport, type RunRecord, type TargetInfo, type WorkloadInfo } from './lib/report.ts';
import { wrk, wrkErrorCount } from './lib/wrk.ts';

const ROOT = join(import.meta.dirname, '..');
const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    only: { type: 'string' },
    profile: { type: 'boolean', default: false },
    compare: { type: 'string' },
  },
});

const quick = flags.quick === true;
const plan = quick
  ? { rounds: 1, seconds: { keepalive: 2, latency: 3, newconn: 2, body1m: 2, tcp: 2, h2: 2 }, warmSeconds: 1, connections10k: 2000 }
  : { rounds: 3, seconds: { keepalive: 5, latency: 8, newconn: 4, body1m: 4, tcp: 4, h2: 5 }, warmSeconds: 5, connections10k: 10_000 };
if (flags.rounds) plan.rounds = Math.max(1, Number(flags.rounds));
const only = flags.only ? new Set(flags.only.split(',')) : undefined;
// The HTTP/2 processes (a second Meshlet pair and HAProxy TLS pair) start only when the h2 workload runs.
const wantH2 = !only || only.has('h2');

// CPU layout: the load generator and the backend share CPU 0, every proxy under test gets CPU 1
// (a two-process pair shares it), so each proxy runs on one core as in DESIGN.md's reference numbers.
const coreCount = cpus().length;
const LOAD_CPU = coreCount >= 2 ? '0' : undefined;
const BACKEND_CPU = coreCount >= 2 ? '0' : undefined;
const PROXY_CPU = coreCount >= 2 ? String(coreCount - 1) : undefined;

const stamp = new Date().toISOString().replace(/[:]/g, '').replace(/\..*/, 'Z');
const resultsDir = join(ROOT, 'bench', 'results', quick ? 'tmp' : '');
const workDir = join(ROOT, 'bench', 'results', 'tmp', `run-${stamp}`);
mkdirSync(workDir, { recursive: true });
mkdirSync(resultsDir, { recursive: true });

const procs: Proc[] = [];
function launch(name: string, cpu: string | undefined, cmd: string, args: string[]): Proc {
  const proc = start(name, cpu, cmd, args, join(workDir, `${name}.log`));
  procs.push(proc);
  return proc;
}
process.once('SIGINT', () => {
  killAll();
  process.exit(130);
});

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/**
 * Meshlet's mTLS settings for the two-hop pair, when this checkout has them (config `security.mtls` and
 * `meshlet ca init`): a throwaway local CA shared by both sidecars. Otherwise the pair runs plaintext.
 */
async function meshletMtls(dir: string): Promise<{ security: Record<string, unknown> } | { reason: string }> {
  const { configSchema } = await import('../sidecar/config/schema.ts');
  const shape = (configSchema as unknown as { shape: Record<string, unknown> }).shape;
  if (!('security' in shape)) return { reason: 'not in the config schema yet: two hops run plaintext' };
  try {
    return { security: await meshletCa(join(ROOT, 'sidecar', 'main.ts'), join(dir, 'meshlet-ca')) };
  } catch (err) {
    return { reason: `meshlet ca init failed, two hops run plaintext: ${(err as Error).message.split('\n')[0]}` };
  }
}

/** True when this checkout's config has the `workers` setting (node:cluster). */
async function workersSupported(): Promise<boolean> {
  const { configSchema } = await import('../sidecar/config/schema.ts');
  return 'workers' in (configSchema as unknown as { shape: Record<string, unknown> }).shape;
}

/**
 * Which Meshlet was measured: the git commit (flagged when sidecar/ has uncommitted changes), or for
 * an exported tree (`git archive` snapshot, no .git) the commit written in its REVISION file.
 */
async function meshletRevision(): Promise<string> {
  try {
    const head = (await run('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], 5000)).trim();
    const dirty = (await run('git', ['-C', ROOT, 'status', '--porcelain', 'sidecar'], 5000)).trim();
    return dirty ? `${head} (+ uncommitted sidecar changes)` : head;
  } catch {
    try {
      return `${readFileSync(join(ROOT, 'REVISION'), 'utf8').trim()} (exported tree)`;
    } catch {
      return 'unknown';
    }
  }
}

/** First line a tool prints about its version (wrk -v exits 1 after printing it). */
async function versionOf(cmd: string, args: string[]): Promise<string> {
  let text: string;
  try {
    text = await run(cmd, args, 5000);
  } catch (err) {
    text = String((err as Error).message).replace(/^.*? exited \d+: /, '');
  }
  return (text.trim().split('\n')[0] ?? '?').replace(/ Copyright.*| - https?:.*/, '');
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const loadAtStart = loadavg();
  log(`work dir ${workDir}; cpus: load ${LOAD_CPU ?? 'any'}, backend ${BACKEND_CPU ?? 'any'}, proxies ${PROXY_CPU ?? 'any'}`);
  const port = {
    backend: await freePort(),
    haproxy: await freePort(),
    haproxyTcp: await freePort(),
    nginx: await freePort(),
    httpProxy: await freePort(),
    floor: await freePort(),
    floorPairOut: await freePort(),
    floorPairIn: await freePort(),
    meshlet: await freePort(),
    meshletTcp: await freePort(),
    meshletInbound: await freePort(),
    meshletAdmin: await freePort(),
    meshletWorkers: await freePort(),
    haproxyThreads: await freePort(),
    compare: await freePort(),
    compareInbound: await freePort(),
    compareAdmin: await freePort(),
    meshletWorkersInbound: await freePort(),
    meshletWorkersAdmin: await freePort(),
    hopA: await freePort(),
    hopAInbound: await freePort(),
    hopAAdmin: await freePort(),
    hopB: await freePort(),
    hopBAdmin: await freePort(),
    tlsOut: await freePort(),
    tlsIn: await freePort(),
    backendH2: await freePort(),
    haproxyH2: await freePort(),
    meshletH2: await freePort(),
    meshletH2Inbound: await freePort(),
    meshletH2Admin: await freePort(),
    h2HopA: await freePort(),
    h2HopAInbound: await freePort(),
    h2HopAAdmin: await freePort(),
    h2HopB: await freePort(),
    h2HopBAdmin: await freePort(),
    h2TlsOut: await freePort(),
    h2TlsIn: await freePort(),
  };
  const certs = await makeCerts(workDir);
  const node = process.execPath;
  // The `meshlet` launcher, as users run it (it turns on Node's compile cache; see docs/performance.md).
  const meshletMain = join(ROOT, 'bin', 'meshlet.js');
  // --expose-gc as the launcher's shebang and the image pass it (trimMemory).
  const meshletArgs = (config: string, profileName?: string): string[] =>
    flags.profile && profileName
      ? ['--expose-gc', '--cpu-prof', `--cpu-prof-dir=${join(workDir, 'profiles')}`, `--cpu-prof-name=${profileName}.cpuprofile`, meshletMain, 'sidecar', '--config', config]
      : ['--expose-gc', meshletMain, 'sidecar', '--config', config];

  const backend = launch('nginx-backend', BACKEND_CPU, 'nginx', ['-p', workDir, '-c', nginxBackend(workDir, port.backend, wantH2 ? port.backendH2 : undefined)]);
  await waitForPort(port.backend, 'nginx backend');

  const haproxyProc = launch('haproxy', PROXY_CPU, 'haproxy', ['-db', '-f', haproxy(workDir, port.haproxy, port.haproxyTcp, port.backend, wantH2 ? { port: port.haproxyH2, backend: port.backendH2 } : undefined)]);
  const nginxProc = launch('nginx-proxy', PROXY_CPU, 'nginx', ['-p', workDir, '-c', nginxProxy(workDir, port.nginx, port.backend)]);
  const httpProxyProc = launch('http-proxy', PROXY_CPU, node, [join(ROOT, 'bench', 'node-proxy.js'), String(port.httpProxy), `http://127.0.0.1:${port.backend}`]);
  // The least JavaScript a Node proxy can run per request: how much of the gap to HAProxy is Node's own.
  const floorProc = launch('node-floor', PROXY_CPU, node, [join(ROOT, 'bench', 'floor-proxy.js'), String(port.floor), String(port.backend)]);
  // The same for a sidecar pair: two floors with mTLS between them, on the proxies' core like the other pairs.
  const floorPair = floorPairArgs(certs, port.floorPairOut, port.floorPairIn, port.backend);
  const floorPairInProc = launch('node-floor-pair-in', PROXY_CPU, node, floorPair.in);
  const floorPairOutProc = launch('node-floor-pair-out', PROXY_CPU, node, floorPair.out);
  const upstream = (name: string, listen: number, target: number, protocol: 'http' | 'http2' | 'tcp' = 'http') => ({
    name,
    port: listen,
    protocol,
    endpoints: [{ address: '127.0.0.1', port: target }],
  });
  const oneHop = meshletConfig(workDir, 'meshlet-one-hop', {
    service: { name: 'bench-app', port: port.backend },
    inbound: { address: '127.0.0.1', port: port.meshletInbound },
    admin: { port: port.meshletAdmin },
    upstreams: [upstream('backend', port.meshlet, port.backend), upstream('backend-tcp', port.meshletTcp, port.backend, 'tcp')],
  });
  // A first start fills the compile cache, as any earlier run of this version would have. A whole
  // sidecar start, not a `validate`: that loads only the config modules, and the first run after a
  // code change then counted the TypeScript transform (~15 MiB it never gives back) as idle RSS.
  const warmUp = launch('meshlet-warm-up', PROXY_CPU, node, meshletArgs(oneHop));
  await waitForPort(port.meshlet, 'meshlet (compile cache warm-up)');
  await stop(warmUp);
  const meshletProc = launch('meshlet', PROXY_CPU, node, meshletArgs(oneHop, 'meshlet-one-hop'));
  // With the `workers` setting: the same one hop served by one process per core, on every CPU (so it
  // shares CPU 0 with the load generator and the backend: a fair picture of a 2-core box, not a pinned one).
  const multi = await workersSupported();
  const workersProc = multi
    ? launch(
        'meshlet-workers',
        undefined,
        node,
        meshletArgs(
          meshletConfig(workDir, 'meshlet-workers', {
            service: { name: 'bench-app', port: port.backend },
            inbound: { address: '127.0.0.1', port: port.meshletWorkersInbound },
            admin: { port: port.meshletWorkersAdmin },
            upstreams: [upstream('backend', port.meshletWorkers, port.backend)],
            workers: 'auto',
          }),
        ),
      )
    : undefined;
  // Its like-for-like reference: HAProxy with a thread per core, unpinned as well.
  const haproxyThreadsProc = multi ? launch('haproxy-threads', undefined, 'haproxy', ['-db', '-f', haproxyThreads(workDir, port.haproxyThreads, port.backend, coreCount)]) : undefined;
  const [compareDir, compareLabel] = flags.compare ? (flags.compare.split('=') as [string, string | undefined]) : [];
  const compareProc = compareDir
    ? launch('meshlet-compare', PROXY_CPU, node, [
        join(compareDir, 'bin', 'meshlet.js'),
        'sidecar',
        '--config',
        meshletConfig(workDir, 'meshlet-compare', {
          service: { name: 'bench-app', port: port.backend },
          inbound: { address: '127.0.0.1', port: port.compareInbound },
          admin: { port: port.compareAdmin },
          upstreams: [upstream('backend', port.compare, port.backend)],
        }),
      ])
    : undefined;
  const mtls = await meshletMtls(workDir);
  const mtlsOn = 'security' in mtls;
  const security = mtlsOn ? { security: mtls.security } : {};
  const { outbound: hopA, inbound: hopB } = meshletPairConfigs(
    workDir,
    { outbound: 'meshlet-hop-a', inbound: 'meshlet-hop-b' },
    { outbound: port.hopA, outboundInbound: port.hopAInbound, outboundAdmin: port.hopAAdmin, inbound: port.hopB, inboundAdmin: port.hopBAdmin, backend: port.backend },
    mtlsOn ? mtls.security : undefined,
  );
  // The same warm-up for what only mTLS sidecars load (credentials, the CA client).
  const warmUpMtls = launch('meshlet-warm-up-mtls', PROXY_CPU, node, meshletArgs(hopB));
  await waitForPort(port.hopB, 'meshlet mTLS (compile cache warm-up)');
  await stop(warmUpMtls);
  const hopBProc = launch('meshlet-hop-b', PROXY_CPU, node, meshletArgs(hopB));
  const hopAProc = launch('meshlet-hop-a', PROXY_CPU, node, meshletArgs(hopA));
  const pair = haproxyTlsPair(workDir, certs, port.tlsOut, port.tlsIn, port.backend);
  const tlsInProc = launch('haproxy-tls-in', PROXY_CPU, 'haproxy', ['-db', '-f', pair.in]);
  const tlsOutProc = launch('haproxy-tls-out', PROXY_CPU, 'haproxy', ['-db', '-f', pair.out]);
  // HTTP/2: a Meshlet one hop with an `http2` upstream to the nginx h2c port, a Meshlet pair whose
  // inbound is `http2` (h2 by ALPN between them under mTLS, h2c to nginx), and HAProxy's h2 TLS pair.
  // Separate processes, so the HTTP/1.1 rows and the idle RSS figures are unchanged by them.
  if (wantH2) {
    launch(
      'meshlet-h2',
      PROXY_CPU,
      node,
      meshletArgs(
        meshletConfig(workDir, 'meshlet-h2', {
          service: { name: 'bench-app', port: port.backend },
          inbound: { address: '127.0.0.1', port: port.meshletH2Inbound },
          admin: { port: port.meshletH2Admin },
          upstreams: [upstream('backend', port.meshletH2, port.backendH2, 'http2')],
        }),
        'meshlet-h2',
      ),
    );
    launch(
      'meshlet-h2-hop-b',
      PROXY_CPU,
      node,
      meshletArgs(
        meshletConfig(workDir, 'meshlet-h2-hop-b', {
          service: { name: 'backend', port: port.backendH2 },
          inbound: { address: '127.0.0.1', port: port.h2HopB, protocol: 'http2' },
          admin: { port: port.h2HopBAdmin },
          ...security,
        }),
      ),
    );
    launch(
      'meshlet-h2-hop-a',
      PROXY_CPU,
      node,
      meshletArgs(
        meshletConfig(workDir, 'meshlet-h2-hop-a', {
          service: { name: 'bench-app', port: port.backend },
          inbound: { address: '127.0.0.1', port: port.h2HopAInbound },
          admin: { port: port.h2HopAAdmin },
          upstreams: [upstream('backend', port.h2HopA, port.h2HopB, 'http2')],
          ...security,
        }),
      ),
    );
    const h2Pair = haproxyTlsPair(workDir, certs, port.h2TlsOut, port.h2TlsIn, port.backendH2, true, 'haproxy-h2-tls');
    launch('haproxy-h2-tls-in', PROXY_CPU, 'haproxy', ['-db', '-f', h2Pair.in]);
    launch('haproxy-h2-tls-out', PROXY_CPU, 'haproxy', ['-db', '-f', h2Pair.out]);
  }
  for (const [p, what] of [
    [port.haproxy, 'haproxy'],
    [port.haproxyTcp, 'haproxy tcp'],
    [port.nginx, 'nginx proxy'],
    [port.httpProxy, 'http-proxy'],
    [port.floor, 'node floor proxy'],
    [port.floorPairIn, 'node floor pair, inbound'],
    [port.floorPairOut, 'node floor pair, outbound'],
    [port.meshlet, 'meshlet'],
    [port.meshletTcp, 'meshlet tcp'],
    ...(workersProc ? ([[port.meshletWorkers, 'meshlet workers']] as const) : []),
    ...(haproxyThreadsProc ? ([[port.haproxyThreads, 'haproxy threads']] as const) : []),
    ...(compareProc ? ([[port.compare, 'meshlet compare']] as const) : []),
    [port.hopB, 'meshlet hop B'],
    [port.hopA, 'meshlet hop A'],
    [port.tlsIn, 'haproxy tls in'],
    [port.tlsOut, 'haproxy tls out'],
    ...(wantH2
      ? ([
          [port.backendH2, 'nginx backend h2c'],
          [port.haproxyH2, 'haproxy h2'],
          [port.meshletH2, 'meshlet h2'],
          [port.h2HopB, 'meshlet h2 hop B'],
          [port.h2HopA, 'meshlet h2 hop A'],
          [port.h2TlsIn, 'haproxy h2 tls in'],
          [port.h2TlsOut, 'haproxy h2 tls out'],
        ] as const)
      : []),
  ] as const) {
    await waitForPort(p, what);
  }
  log('all processes listening');

  // Idle RSS before any traffic: what a sidecar costs just by being there, once started. Read after the
  // processes settle (as bench/memory/idle.ts does), not in the middle of a start: Meshlet's trimMemory
  // runs 1 s after start, and whether the read came before or after it depended on how long the
  // other processes took to listen (95 vs 78 MiB in two runs of the same code).
  await new Promise((resolve) => setTimeout(resolve, 2500));
  const rssIdle: Record<string, number | undefined> = {
    haproxy: rssBytes(haproxyProc.pid),
    nginx: rssBytes(nginxProc.pid),
    'http-proxy': rssBytes(httpProxyProc.pid),
    'node-floor': rssBytes(floorProc.pid),
    'node-floor-pair': sum(rssBytes(floorPairInProc.pid), rssBytes(floorPairOutProc.pid)),
    meshlet: rssBytes(meshletProc.pid),
    ...(workersProc ? { 'meshlet-workers': rssTreeBytes(workersProc.pid) } : {}),
    ...(haproxyThreadsProc ? { 'haproxy-threads': rssBytes(haproxyThreadsProc.pid) } : {}),
    ...(compareProc ? { 'meshlet-compare': rssBytes(compareProc.pid) } : {}),
    'meshlet-2hop': sum(rssBytes(hopAProc.pid), rssBytes(hopBProc.pid)),
    'haproxy-tls-pair': sum(rssBytes(tlsInProc.pid), rssBytes(tlsOutProc.pid)),
  };

  const twoHopLabel = mtlsOn ? 'Meshlet two hops (mTLS)' : 'Meshlet two hops (plaintext)';
  const httpTargets: TargetInfo[] = [
    { id: 'direct', label: 'direct to nginx', port: port.backend },
    { id: 'haproxy', label: 'HAProxy', port: port.haproxy },
    { id: 'nginx', label: 'nginx proxy', port: port.nginx },
    { id: 'http-proxy', label: 'http-proxy (Node)', port: port.httpProxy },
    { id: 'node-floor', label: 'Node floor (bench/floor-proxy.js, no features)', port: port.floor },
    { id: 'meshlet', label: 'Meshlet one hop', port: port.meshlet },
    ...(compareProc ? [{ id: 'meshlet-compare', label: `Meshlet one hop (${compareLabel ?? compareDir})`, port: port.compare }] : []),
    ...(workersProc ? [{ id: 'meshlet-workers', label: `Meshlet one hop, workers: auto (${coreCount}), unpinned`, port: port.meshletWorkers }] : []),
    ...(haproxyThreadsProc ? [{ id: 'haproxy-threads', label: `HAProxy nbthread ${coreCount}, unpinned`, port: port.haproxyThreads }] : []),
    { id: 'meshlet-2hop', label: twoHopLabel, port: port.hopA, reference: 'haproxy-tls-pair' },
    { id: 'node-floor-pair', label: 'Node floor pair (two bench/floor-proxy.js, mTLS between them)', port: port.floorPairOut, reference: 'haproxy-tls-pair' },
    { id: 'haproxy-tls-pair', label: 'HAProxy TLS pair (mTLS)', port: port.tlsOut },
  ];
  const h2Targets: TargetInfo[] = [
    { id: 'direct', label: 'direct to nginx (h2c)', port: port.backendH2 },
    { id: 'haproxy', label: 'HAProxy (proto h2 both sides)', port: port.haproxyH2 },
    { id: 'meshlet', label: 'Meshlet one hop (http2 upstream)', port: port.meshletH2 },
    { id: 'meshlet-2hop', label: mtlsOn ? 'Meshlet two hops (h2 by ALPN, mTLS)' : 'Meshlet two hops (h2c, plaintext)', port: port.h2HopA, reference: 'haproxy-tls-pair' },
    { id: 'haproxy-tls-pair', label: 'HAProxy TLS pair (h2 by ALPN, mTLS)', port: port.h2TlsOut },
  ];
  const tcpTargets: TargetInfo[] = [
    { id: 'direct', label: 'direct to nginx', port: port.backend },
    { id: 'haproxy', label: 'HAProxy tcp mode', port: port.haproxyTcp },
    { id: 'meshlet', label: 'Meshlet tcp upstream', port: port.meshletTcp },
  ];
  const workloads: WorkloadInfo[] = [
    { id: 'keepalive', title: 'HTTP/1.1 keep-alive, small responses', metric: 'rps', path: SMALL_PATH, connections: 50, seconds: plan.seconds.keepalive, targets: httpTargets },
    { id: 'latency', title: 'Latency at a fixed moderate rate (10 connections, each waiting 5-15 ms at random between requests, about 1k req/s)', metric: 'latency', path: SMALL_PATH, connections: 10, thinkMs: 10, jitter: true, seconds: plan.seconds.latency, targets: httpTargets },
    { id: 'lockstep', title: 'Latency in bursts (10 connections x 1 request per 10 ms, in step: bursts of 10, about 1k req/s)', metric: 'latency', path: SMALL_PATH, connections: 10, thinkMs: 10, seconds: plan.seconds.latency, targets: httpTargets },
    { id: 'newconn', title: 'New connection per request (Connection: close)', metric: 'rps', path: SMALL_PATH, connections: 50, headers: ['Connection: close'], seconds: plan.seconds.newconn, targets: httpTargets },
    { id: 'body1m', title: '1 MiB response bodies', metric: 'mbps', path: LARGE_PATH, connections: 10, seconds: plan.seconds.body1m, targets: httpTargets },
    { id: 'tcp', title: 'TCP throughput through an L4 upstream (HTTP 1 MiB responses through a byte pipe)', metric: 'mbps', path: LARGE_PATH, connections: 10, seconds: plan.seconds.tcp, targets: tcpTargets },
    { id: 'h2', title: 'HTTP/2 (h2c from the client), small responses, 10 clients x 10 streams', metric: 'rps', tool: 'h2load', path: SMALL_PATH, connections: 10, streams: 10, seconds: plan.seconds.h2, targets: h2Targets },
  ].filter((w) => !only || only.has(w.id)) as WorkloadInfo[];

  // 5 s each: a Node pair at ~3k req/s was still compiling hot functions after 2 s (first rounds ~8%
  // more CPU per request than after 12 s); HAProxy and nginx need none, and lose nothing by it.
  if (plan.warmSeconds > 0) {
    log('warming up every HTTP target');
    for (const t of httpTargets) await wrk({ url: `http://127.0.0.1:${t.port}${SMALL_PATH}`, connections: 50, seconds: plan.warmSeconds, cpu: LOAD_CPU });
    if (workloads.some((w) => w.id === 'h2')) {
      for (const t of h2Targets) await h2load({ url: `http://127.0.0.1:${t.port}${SMALL_PATH}`, clients: 10, streams: 10, seconds: plan.warmSeconds, cpu: LOAD_CPU });
    }
  }

  const runs: RunRecord[] = [];
  const roundLoad: number[][] = [];
  for (let round = 0; round < plan.rounds; round++) {
    roundLoad.push(loadavg());
    for (const w of workloads) {
      // Rotate the order every round so no target always runs right after the same neighbour.
      const order = w.targets.map((_, i) => w.targets[(i + round) % w.targets.length]!);
      for (const t of order) {
        if (w.tool === 'h2load') {
          const result = await h2load({ url: `http://127.0.0.1:${t.port}${w.path}`, clients: w.connections, streams: w.streams ?? 1, seconds: w.seconds, cpu: LOAD_CPU });
          runs.push({ round, workload: w.id, target: t.id, result });
          const errors = h2loadErrorCount(result);
          log(
            `round ${round + 1}/${plan.rounds} ${w.id.padEnd(9)} ${t.id.padEnd(16)} ${result.rps.toFixed(0).padStart(7)} req/s ${result.protocol ?? '?'} mean ${(result.requestTimeUs.mean / 1000).toFixed(2)} ms${errors ? ` ERRORS ${JSON.stringify(result.errors)}` : ''}`,
          );
          continue;
        }
        const result = await wrk({
          url: `http://127.0.0.1:${t.port}${w.path}`,
          connections: w.connections,
          seconds: w.seconds,
          thinkMs: w.thinkMs,
          jitter: w.jitter,
          headers: w.headers,
          cpu: LOAD_CPU,
        });
        runs.push({ round, workload: w.id, target: t.id, result });
        const errors = wrkErrorCount(result);
        log(
          `round ${round + 1}/${plan.rounds} ${w.id.padEnd(9)} ${t.id.padEnd(16)} ${result.rps.toFixed(0).padStart(7)} req/s ${result.mbps.toFixed(1).padStart(8)} MB/s p99 ${(result.latencyUs.p99 / 1000).toFixed(2)} ms${errors ? ` ERRORS ${JSON.stringify(result.errors)}` : ''}`,
        );
      }
    }
  }

  const rssAfterLoad: Record<string, number | undefined> = { meshlet: rssBytes(meshletProc.pid), haproxy: rssBytes(haproxyProc.pid) };
  if (workersProc) rssAfterLoad['meshlet-workers'] = rssTreeBytes(workersProc.pid);
  const rss10k: Record<string, { rss: number | undefined; open: number; ok: number }> = {};
  for (const [id, p, pid] of [
    ['meshlet', port.meshlet, meshletProc.pid],
    ['haproxy', port.haproxy, haproxyProc.pid],
  ] as const) {
    rss10k[id] = await holdConnections(p, plan.connections10k, pid);
    log(`${id}: ${rss10k[id].open} open connections, RSS ${mb(rss10k[id].rss)} MB`);
  }

  for (const p of procs.reverse()) await stop(p);
  void backend;

  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    quick,
    rounds: plan.rounds,
    machine: {
      cores: coreCount,
      cpuModel: cpus()[0]?.model ?? '?',
      memoryBytes: totalmem(),
      kernel: release(),
      node: process.version,
      wrk: await versionOf('wrk', ['-v']),
      haproxy: await versionOf('haproxy', ['-v']),
      nginx: await versionOf('nginx', ['-v']),
      ...(workloads.some((w) => w.tool === 'h2load') ? { h2load: await versionOf('h2load', ['--version']) } : {}),
      meshletCommit: await meshletRevision(),
      cpuLayout: { load: LOAD_CPU ?? 'any', backend: BACKEND_CPU ?? 'any', proxies: PROXY_CPU ?? 'any' },
      loadAvgStart: loadAtStart,
      loadAvgEnd: loadavg(),
      loadAvgPerRound: roundLoad,
    },
    meshletMtls: mtlsOn ? 'on (security.mtls with a local CA from `meshlet ca init`)' : mtls.reason,
    meshletWorkers: multi ? `1 (pinned rows); auto (${coreCount}) for the workers row` : '1 (no workers setting in this checkout)',
    workloads,
    runs,
    memory: { idle: rssIdle, afterLoad: rssAfterLoad, withConnections: rss10k, connections: plan.connections10k },
  };
  const base = join(resultsDir, `${quick ? 'quick-' : ''}${stamp}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  const markdown = renderMarkdown(report);
  writeFileSync(`${base}.md`, markdown);
  process.stdout.write(markdown);
  log(`results: ${base}.md and .json`);
}

function sum(...values: Array<number | undefined>): number | undefined {
  return values.some((v) => v === undefined) ? undefined : values.reduce<number>((a, v) => a + v!, 0);
}

function mb(bytes: number | undefined): string {
  return bytes === undefined ? '?' : (bytes / 1024 / 1024).toFixed(1);
}

/** Opens `count` connections (one request each) to `port` from a helper process and reads `pid`'s RSS. */
async function holdConnections(port: number, count: number, pid: number): Promise<{ rss: number | undefined; open: number; ok: number }> {
  const [file, ...argv] = pinnedArgv(LOAD_CPU, process.execPath, [join(ROOT, 'bench', 'lib', 'conns.ts'), String(port), String(count)]);
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        const match = /READY (.*)\n/.exec(out);
        if (match) resolve(match[1]!);
      });
      child.once('exit', (code) => reject(new Error(`connection holder exited ${code}`)));
    });
    const stats = JSON.parse(line) as { open: number; ok: number };
    return { rss: rssBytes(pid), open: stats.open, ok: stats.ok };
  } finally {
    child.kill('SIGKILL');
  }
}

try {
  await main();
} catch (err) {
  killAll();
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 1;
}
