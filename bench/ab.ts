/**
 * A/B of Meshlet checkouts on the one-hop keep-alive workload, with HAProxy beside them as the yardstick:
 *   node bench/ab.ts [--rounds 6] [--seconds 4] [--connections 50] [--two-hop] [--large] [--tcp] [--floor] [--h2] [--launcher] DIR[=LABEL[=NODE_FLAGS]] ...
 * Each DIR is a Meshlet checkout (the current one is `.`; an older one from `git archive`); NODE_FLAGS,
 * comma-separated, go to its `node` (e.g. `.=semi4=--max-semi-space-size=4` runs the same checkout with a flag). Rounds are
 * interleaved and rotated, every target pinned like bench/run.ts (proxies on CPU 1, wrk and nginx on
 * CPU 0). Besides req/s it reports the proxy's CPU time per request (utime + stime from /proc, all of
 * the target's processes, and the share spent in the kernel), which moves less than req/s when other
 * work shares the machine.
 * --large fetches the 1 MiB file instead of the 29-byte one; --tcp fetches it through L4 byte pipes
 * (HAProxy `mode tcp`, a Meshlet `protocol: tcp` upstream). --two-hop runs each checkout as an mTLS
 * sidecar pair, compared with the HAProxy TLS pair. --floor adds bench/floor-proxy.js (the least
 * JavaScript a Node proxy can run per request) beside HAProxy, or with --two-hop two of them with mTLS
 * between them. --h2 measures one hop of
 * HTTP/2 instead: h2load (10 clients x 10 streams, h2c) through an `http2` upstream to nginx's h2c port,
 * HAProxy with `proto h2` on both sides (mean request time instead of p99). --launcher starts each checkout
 * through its bin/meshlet.js, as users and bench/run.ts do, instead of sidecar/main.ts. Prints a markdown table of medians;
 * nothing is written to bench/results.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { floorPairArgs, haproxy, haproxyTlsPair, LARGE_PATH, makeCerts, meshletConfig, nginxBackend, SMALL_PATH } from './lib/configs.ts';
import { checkoutSpec, freePort, kernelCounters, killAll, run, start, stop, waitForPort, type Proc } from './lib/procs.ts';
import { median } from './lib/report.ts';
import { runLoad } from './lib/load.ts';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '4' },
    connections: { type: 'string', default: '50' },
    'two-hop': { type: 'boolean', default: false },
    large: { type: 'boolean', default: false },
    tcp: { type: 'boolean', default: false },
    floor: { type: 'boolean', default: false },
    h2: { type: 'boolean', default: false },
    launcher: { type: 'boolean', default: false },
  },
});
if (positionals.length === 0) {
  process.stderr.write('usage: node bench/ab.ts [--rounds N] [--seconds S] [--connections C] [--two-hop] [--large] [--tcp] [--floor] [--h2] [--launcher] DIR[=LABEL[=NODE_FLAGS]] ...\n');
  process.exit(2);
}
const h2 = flags.h2;
if (h2 && (flags['two-hop'] || flags.tcp || flags.large || flags.floor)) {
  process.stderr.write('bench/ab.ts: --h2 measures one hop of small responses only (no --two-hop, --tcp, --large or --floor)\n');
  process.exit(2);
}
const rounds = Number(flags.rounds);
const seconds = Number(flags.seconds);
const connections = Number(flags.connections);
const twoHop = flags['two-hop'];
const tcp = flags.tcp;
const path = flags.large || tcp ? LARGE_PATH : SMALL_PATH;
const pinned = cpus().length >= 2;
const LOAD = pinned ? '0' : undefined;
const PROXY = pinned ? '1' : undefined;
const dir = join(import.meta.dirname, 'results', 'tmp', `ab-${Date.now()}`);
mkdirSync(dir, { recursive: true });

function sumCounters(procs: readonly Proc[]): { user: number; system: number; minorFaults: number; contextSwitches: number } {
  const total = { user: 0, system: 0, minorFaults: 0, contextSwitches: 0 };
  for (const p of procs) {
    const c = kernelCounters(p.pid);
    total.user += c.user;
    total.system += c.system;
    total.minorFaults += c.minorFaults;
    total.contextSwitches += c.contextSwitches;
  }
  return total;
}

/** Per-round figures of one target; the report takes their medians. */
interface Samples {
  readonly rps: number[];
  readonly cpuUsPerRequest: number[];
  readonly systemShare: number[];
  /** Minor page faults and context switches of the target's processes per 1,000 requests. */
  readonly faultsPerKilo: number[];
  readonly switchesPerKilo: number[];
  /** wrk's p99; h2load prints no percentiles, so for --h2 the mean request time. */
  readonly latencyMs: number[];
}

interface Target {
  readonly label: string;
  readonly port: number;
  readonly procs: Proc[];
  readonly samples: Samples;
}

function newSamples(): Samples {
  return { rps: [], cpuUsPerRequest: [], systemShare: [], faultsPerKilo: [], switchesPerKilo: [], latencyMs: [] };
}

process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});

const backendPort = await freePort();
const backendH2Port = await freePort();
const backend = start('nginx-backend', LOAD, 'nginx', ['-p', dir, '-c', nginxBackend(dir, backendPort, h2 ? backendH2Port : undefined)], join(dir, 'backend.log'));
await waitForPort(backendPort, 'backend');
const targets: Target[] = [];

const haproxyHttpPort = await freePort();
const haproxyTcpPort = await freePort();
const haproxyH2Port = await freePort();
const haproxyPort = h2 ? haproxyH2Port : tcp ? haproxyTcpPort : haproxyHttpPort;
if (twoHop) {
  // Pairs are compared with a pair: HAProxy out -> mTLS -> HAProxy in, both on the proxies' core.
  const certs = await makeCerts(dir);
  const outPort = await freePort();
  const inPort = await freePort();
  const pair = haproxyTlsPair(dir, certs, outPort, inPort, backendPort);
  const procs = [start('haproxy-tls-in', PROXY, 'haproxy', ['-f', pair.in], join(dir, 'haproxy-tls-in.log')), start('haproxy-tls-out', PROXY, 'haproxy', ['-f', pair.out], join(dir, 'haproxy-tls-out.log'))];
  targets.push({ label: 'HAProxy TLS pair', port: outPort, procs, samples: newSamples() });
  if (flags.floor) {
    const floorOut = await freePort();
    const floorPair = floorPairArgs(certs, floorOut, await freePort(), backendPort);
    const floorProcs = [start('floor-in', PROXY, process.execPath, floorPair.in, join(dir, 'floor-in.log')), start('floor-out', PROXY, process.execPath, floorPair.out, join(dir, 'floor-out.log'))];
    await waitForPort(floorOut, 'floor pair');
    targets.push({ label: 'Node floor pair (mTLS)', port: floorOut, procs: floorProcs, samples: newSamples() });
  }
} else {
  const haproxyProc = start('haproxy', PROXY, 'haproxy', ['-f', haproxy(dir, haproxyHttpPort, haproxyTcpPort, backendPort, h2 ? { port: haproxyH2Port, backend: backendH2Port } : undefined)], join(dir, 'haproxy.log'));
  targets.push({ label: 'HAProxy', port: haproxyPort, procs: [haproxyProc], samples: newSamples() });
}
if (flags.floor && !twoHop && !tcp) {
  const floorPort = await freePort();
  const floorProc = start('floor', PROXY, process.execPath, [join(import.meta.dirname, 'floor-proxy.js'), String(floorPort), String(backendPort)], join(dir, 'floor.log'));
  await waitForPort(floorPort, 'floor proxy');
  targets.push({ label: 'Node floor (bench/floor-proxy.js)', port: floorPort, procs: [floorProc], samples: newSamples() });
}

for (const [i, spec] of positionals.entries()) {
  const checkout = checkoutSpec(spec);
  const label = checkout.label ?? spec;
  // --expose-gc as the launcher and the image start Meshlet (trimMemory).
  const nodeFlags = ['--expose-gc', ...checkout.nodeFlags];
  const root = checkout.dir;
  // --launcher: through bin/meshlet.js, as users and bench/run.ts start it (compile cache, start-up tiering).
  const main = join(root, ...(flags.launcher ? ['bin', 'meshlet.js'] : ['sidecar', 'main.ts']));
  const name = `meshlet-${i}`;
  const port = await freePort();
  const base = { service: { name: 'bench-app', port: backendPort }, admin: { port: await freePort() } };
  const procs: Proc[] = [];
  if (twoHop) {
    const caDir = join(dir, `${name}-ca`);
    await run(process.execPath, [main, 'ca', 'init', '--dir', caDir]);
    const security = { mtls: true, ca: { dir: caDir } };
    const inboundPort = await freePort();
    const inbound = meshletConfig(dir, `${name}-in`, { ...base, service: { name: 'backend', port: backendPort }, inbound: { address: '127.0.0.1', port: inboundPort }, security });
    procs.push(start(`${name}-in`, PROXY, process.execPath, [...nodeFlags, main, 'sidecar', '--config', inbound], join(dir, `${name}-in.log`)));
    await waitForPort(inboundPort, `${label} inbound`);
    const outbound = meshletConfig(dir, `${name}-out`, {
      ...base,
      admin: { port: await freePort() },
      inbound: { address: '127.0.0.1', port: await freePort() },
      upstreams: [{ name: 'backend', port, endpoints: [{ address: '127.0.0.1', port: inboundPort }] }],
      security,
    });
    procs.push(start(`${name}-out`, PROXY, process.execPath, [...nodeFlags, main, 'sidecar', '--config', outbound], join(dir, `${name}-out.log`)));
  } else {
    const upstream = h2 ? { protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: backendH2Port }] } : { ...(tcp ? { protocol: 'tcp' } : {}), endpoints: [{ address: '127.0.0.1', port: backendPort }] };
    const config = meshletConfig(dir, name, { ...base, inbound: { address: '127.0.0.1', port: await freePort() }, upstreams: [{ name: 'backend', port, ...upstream }] });
    procs.push(start(name, PROXY, process.execPath, [...nodeFlags, main, 'sidecar', '--config', config], join(dir, `${name}.log`)));
  }
  await waitForPort(port, label);
  targets.push({ label, port, procs, samples: newSamples() });
}
await waitForPort(targets[0]!.port, targets[0]!.label);

/** One load run against `port`: wrk, or h2load for --h2. */
const load = (port: number, secs: number) => runLoad({ url: `http://127.0.0.1:${port}${path}`, seconds: secs, cpu: LOAD, h2, connections });

try {
  for (const t of targets) await load(t.port, 2);
  for (let round = 0; round < rounds; round++) {
    const order = targets.map((_, i) => targets[(i + round) % targets.length]!);
    for (const t of order) {
      const before = sumCounters(t.procs);
      const result = await load(t.port, seconds);
      const after = sumCounters(t.procs);
      const used = after.user - before.user + after.system - before.system;
      const cpuUs = (used / result.requests) * 1e6;
      t.samples.rps.push(result.rps);
      t.samples.cpuUsPerRequest.push(cpuUs);
      t.samples.systemShare.push((after.system - before.system) / used);
      t.samples.faultsPerKilo.push(((after.minorFaults - before.minorFaults) / result.requests) * 1000);
      t.samples.switchesPerKilo.push(((after.contextSwitches - before.contextSwitches) / result.requests) * 1000);
      t.samples.latencyMs.push(result.latencyMs);
      process.stderr.write(`[ab] round ${round + 1}/${rounds} ${t.label.padEnd(20)} ${result.rps.toFixed(0).padStart(7)} req/s ${result.mbps.toFixed(0).padStart(5)} MB/s ${cpuUs.toFixed(1).padStart(6)} µs CPU/req${result.errors ? `  errors ${result.errors}` : ''}\n`);
    }
  }
} finally {
  for (const t of targets) for (const p of t.procs) await stop(p);
  await stop(backend);
}

const loadAverage = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const haproxyRps = median(targets[0]!.samples.rps);
const lines = [
  h2
    ? `One hop of HTTP/2 (h2c, http2 upstream), ${path}, h2load -c10 -m10 ${seconds}s x ${rounds} interleaved rounds (medians); load average at the end ${loadAverage}.`
    : `${twoHop ? 'Two hops with mTLS' : 'One hop'}${tcp ? ' through L4 (tcp)' : ''}, keep-alive ${path}, wrk -c${connections} ${seconds}s x ${rounds} interleaved rounds (medians); load average at the end ${loadAverage}.`,
  '',
  `| target | req/s | vs ${targets[0]!.label} | CPU µs/request | of which in the kernel | minor faults / 1k requests | context switches / 1k requests | ${h2 ? 'mean' : 'p99'} ms |`,
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...targets.map((t) => {
    const { rps, cpuUsPerRequest, systemShare, faultsPerKilo, switchesPerKilo, latencyMs } = t.samples;
    const r = median(rps);
    return `| ${t.label} | ${Math.round(r).toLocaleString('en-US')} | ${(r / haproxyRps).toFixed(2)}x | ${median(cpuUsPerRequest).toFixed(1)} | ${(median(systemShare) * 100).toFixed(0)}% | ${median(faultsPerKilo).toFixed(1)} | ${median(switchesPerKilo).toFixed(1)} | ${median(latencyMs).toFixed(2)} |`;
  }),
];
process.stdout.write(`${lines.join('\n')}\n`);
