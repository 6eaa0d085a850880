/**
 * Instructions per proxied request, counted by valgrind (callgrind) on the proxy's main thread: a figure
 * that does not move with the host's load at all, where req/s and CPU time swing +-15% here between
 * runs. One hop, HTTP/1.1 keep-alive, the small response: a wrk warm-up (JIT, pools), one unmeasured
 * h2load batch, then `--requests` counted by h2load (10 connections) with instrumentation on.
 *   node bench/instructions.ts [--floor] [--keep-map] [--two-hop inbound|outbound] [--requests 5000] [--warm 15] [--top 30] [DIR[=LABEL[=NODE_FLAGS]] ...]
 * DIRs are Meshlet checkouts (default: this one), each with its own node flags if given (comma-separated,
 * as bench/ab.ts takes them); --floor adds bench/floor-proxy.js; --keep-map keeps node's perf map beside
 * each callgrind file (`callgrind.LABEL.perf.map`: JIT addresses in `callgrind_annotate --tree=caller`
 * output are named by its latest entry covering them). `--two-hop inbound` counts the inbound sidecar of a
 * mTLS pair (the load enters through an outbound sidecar of the same checkout, not counted), `outbound`
 * the outbound one (its inbound peer not counted); a CA is made with the checkout's `meshlet ca init`.
 * Needs valgrind
 * (Debian package `valgrind`). Instructions are not time (see bench/lib/callgrind-summary.ts): use it
 * to decide whether a change removes work, then check time with bench/ab.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { meshletCa, meshletConfig, meshletPairConfigs, nginxBackend, SMALL_PATH } from './lib/configs.ts';
import { type InstructionSummary, summarizeInstructions } from './lib/callgrind-summary.ts';
import { runLoad } from './lib/load.ts';
import { checkoutSpec, freePort, runPinned, start, stop, toolSetup, waitForPort } from './lib/procs.ts';

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    floor: { type: 'boolean', default: false },
    'keep-map': { type: 'boolean', default: false },
    'two-hop': { type: 'string' },
    requests: { type: 'string', default: '5000' },
    warm: { type: 'string', default: '15' },
    top: { type: 'string', default: '30' },
  },
});
const twoHop = flags['two-hop'];
if (twoHop !== undefined && twoHop !== 'inbound' && twoHop !== 'outbound') {
  process.stderr.write(`instructions: --two-hop takes inbound or outbound, not "${twoHop}"\n`);
  process.exit(2);
}
for (const tool of ['valgrind', 'callgrind_control', 'callgrind_annotate', 'h2load', 'wrk']) {
  if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
    process.stderr.write(`instructions: ${tool} is missing (apt-get install valgrind nghttp2-client wrk)\n`);
    process.exit(2);
  }
}
const requests = Number(flags.requests);
const warmSeconds = Number(flags.warm);
const here = join(import.meta.dirname, '..');
// As bench/ab.ts takes them, e.g. `.=semi16=--min-semi-space-size=16`.
const targets = (positionals.length > 0 ? positionals : ['.']).map((spec) => {
  const checkout = checkoutSpec(spec);
  return { ...checkout, label: checkout.label ?? basename(checkout.dir) };
});
const { dir, pinned, loadCpu: LOAD } = toolSetup('instructions');

const backendPort = await freePort();
const backend = start('nginx-backend', LOAD, 'nginx', ['-p', dir, '-c', nginxBackend(dir, backendPort)], join(dir, 'backend.log'));
await waitForPort(backendPort, 'backend');

/** h2load's HTTP/1.1 mode sends exactly `n` requests (wrk cannot), 10 connections, keep-alive. */
async function batch(url: string, n: number): Promise<void> {
  const out = await runPinned(LOAD, 'h2load', ['--h1', '-n', String(n), '-c', '10', url], 600_000);
  if (!out.includes(`${n} succeeded`)) throw new Error(`h2load did not complete ${n} requests:\n${out}`);
}

/** The main thread's summary, and the other threads' instructions per request beside it. */
type Measured = InstructionSummary & { readonly backgroundPerRequest: number };

/**
 * What one target runs: the counted process's arguments for the port it listens on, and, for a pair,
 * the peer that is not counted (started first, on the load's CPU) and the port the load goes to.
 */
interface TargetSetup {
  readonly argv: string[];
  readonly peer?: { readonly argv: string[]; readonly port: number };
  readonly loadPort?: number;
}

async function measure(label: string, setup: (port: number) => Promise<TargetSetup>): Promise<Measured> {
  const port = await freePort();
  const out = join(dir, `callgrind.${label}`);
  const target = await setup(port);
  const argv = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', '--smc-check=all-non-file', `--callgrind-out-file=${out}`, process.execPath, '--perf-basic-prof', ...target.argv];
  const peer = target.peer ? start(`${label}-peer`, LOAD, process.execPath, target.peer.argv, join(dir, `${label}-peer.log`)) : undefined;
  const proxy = start(label, pinned ? '1' : undefined, argv[0]!, argv.slice(1), join(dir, `${label}.log`));
  const url = `http://127.0.0.1:${target.loadPort ?? port}${SMALL_PATH}`;
  try {
    if (target.peer) await waitForPort(target.peer.port, `${label}-peer`, 60_000);
    await waitForPort(port, label, 120_000); // node under valgrind starts in 5-10 s
    await runLoad({ url, seconds: warmSeconds, cpu: LOAD, connections: 10 });
    // The end of a wrk run (connections cut mid-request) deoptimizes some code; a clean batch re-settles it.
    await batch(url, requests);
    execFileSync('callgrind_control', ['-i', 'on', String(proxy.pid)], { stdio: 'pipe' });
    await batch(url, requests);
    execFileSync('callgrind_control', ['-i', 'off', String(proxy.pid)], { stdio: 'pipe' });
    execFileSync('callgrind_control', ['-d', String(proxy.pid)], { stdio: 'pipe' });
  } finally {
    await stop(proxy);
    if (peer) await stop(peer);
  }
  // --separate-threads: one file per thread per dump; thread 1 is the main (JavaScript) thread.
  const main = `callgrind.${label}.1-01`;
  const file = join(dir, main);
  if (!existsSync(file)) throw new Error(`no callgrind dump of ${label}'s main thread in ${dir}`);
  const annotate = (inclusive: boolean) => execFileSync('callgrind_annotate', ['--threshold=100', ...(inclusive ? ['--inclusive=yes'] : []), file], { maxBuffer: 1 << 28 }).toString();
  const mapFile = `/tmp/perf-${proxy.pid}.map`;
  // V8's worker threads: parallel scavenging, concurrent marking and JIT compilation (which varies run to run).
  let background = 0;
  for (const other of readdirSync(dir).filter((f) => f.startsWith(`callgrind.${label}.1-`) && f !== main)) {
    const totals = /^totals: (\d+)/m.exec(readFileSync(join(dir, other), 'utf8'));
    if (totals) background += Number(totals[1]);
  }
  const summary = summarizeInstructions(annotate(false), annotate(true), existsSync(mapFile) ? readFileSync(mapFile, 'utf8') : '', requests);
  // Kept beside the counts on request: it names JIT code in `callgrind_annotate --tree=caller` output.
  if (flags['keep-map'] && existsSync(mapFile)) copyFileSync(mapFile, `${out}.perf.map`);
  rmSync(mapFile, { force: true }); // node leaves one per process in /tmp, tens of MB each
  return { ...summary, backgroundPerRequest: background / requests };
}

type Setup = (port: number, label: string, main: string, sidecarArgs: (config: string) => string[]) => Promise<TargetSetup>;

/** One hop: the counted sidecar's outbound listener in front of the backend. */
const oneHop: Setup = async (port, label, _main, sidecarArgs) => ({
  argv: sidecarArgs(
    meshletConfig(dir, `meshlet-${label}`, {
      service: { name: 'bench-app', port: backendPort },
      inbound: { address: '127.0.0.1', port: await freePort() },
      admin: { port: await freePort() },
      logging: { level: 'warn', accessLog: false },
      upstreams: [{ name: 'backend', port, endpoints: [{ address: '127.0.0.1', port: backendPort }] }],
    }),
  ),
});

/** The configs of a mTLS pair as bench/run.ts starts it, with a CA of the checkout's own. */
async function pairConfigs(label: string, main: string, outboundPort: number, inboundPort: number): Promise<{ outbound: string; inbound: string }> {
  const security = await meshletCa(main, join(dir, `ca-${label}`));
  const ports = { outbound: outboundPort, outboundInbound: await freePort(), outboundAdmin: await freePort(), inbound: inboundPort, inboundAdmin: await freePort(), backend: backendPort };
  return meshletPairConfigs(dir, { outbound: `meshlet-${label}-out`, inbound: `meshlet-${label}-in` }, ports, security);
}

/** Counts the inbound sidecar (mTLS in, plain to the backend); the load enters through its outbound peer. */
const pairCountingInbound: Setup = async (port, label, main, sidecarArgs) => {
  const outboundPort = await freePort();
  const configs = await pairConfigs(label, main, outboundPort, port);
  return { argv: sidecarArgs(configs.inbound), peer: { argv: [main, 'sidecar', '--config', configs.outbound], port: outboundPort }, loadPort: outboundPort };
};

/** Counts the outbound sidecar (plain in, mTLS to its inbound peer, which is not counted). */
const pairCountingOutbound: Setup = async (port, label, main, sidecarArgs) => {
  const inboundPort = await freePort();
  const configs = await pairConfigs(label, main, port, inboundPort);
  return { argv: sidecarArgs(configs.outbound), peer: { argv: [main, 'sidecar', '--config', configs.inbound], port: inboundPort } };
};

const results: Array<[string, Measured]> = [];
try {
  if (flags.floor) results.push(['Node floor', await measure('floor', async (port) => ({ argv: [join(here, 'bench', 'floor-proxy.js'), String(port), String(backendPort)] }))]);
  for (const { dir: checkout, label, nodeFlags } of targets) {
    const main = join(checkout, 'sidecar', 'main.ts');
    const sidecarArgs = (config: string) => ['--expose-gc', ...nodeFlags, main, 'sidecar', '--config', config];
    const setup = twoHop === undefined ? oneHop : twoHop === 'inbound' ? pairCountingInbound : pairCountingOutbound;
    results.push([label, await measure(label, (port) => setup(port, label, main, sidecarArgs))]);
  }
} finally {
  await stop(backend);
}

const n = (x: number) => Math.round(x).toLocaleString('en-US');
const what = twoHop === undefined ? 'one hop' : `the ${twoHop} sidecar of a mTLS pair`;
const lines = [`Instructions per request (main thread; other threads: V8's parallel GC and JIT compilers), ${what}, keep-alive ${SMALL_PATH}, ${requests} requests counted after a ${warmSeconds} s warm-up`, ''];
lines.push(`| target | main thread | of which GC | other threads | ${results[0]![1].byCategory.map(([c]) => c).join(' | ')} |`);
lines.push(`| --- | ---: | ---: | ---: | ${results[0]![1].byCategory.map(() => '---:').join(' | ')} |`);
for (const [label, s] of results) {
  const cat = new Map(s.byCategory);
  lines.push(`| ${label} | ${n(s.perRequest)} | ${n(s.gcPerRequest)} | ${n(s.backgroundPerRequest)} | ${results[0]![1].byCategory.map(([c]) => n(cat.get(c) ?? 0)).join(' | ')} |`);
}
for (const [label, s] of results) {
  lines.push('', `${label}, self instructions per request by symbol:`);
  for (const [symbol, count] of s.bySymbol.slice(0, Number(flags.top))) lines.push(`${n(count).padStart(7)}  ${symbol.slice(0, 150)}`);
}
process.stdout.write(`${lines.join('\n')}\n(callgrind files in ${dir})\n`);
