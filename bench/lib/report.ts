/** Medians over rounds, ratios to direct and to HAProxy, and the markdown table of a bench run. */
import { h2loadErrorCount, type H2loadResult } from './h2load.ts';
import type { WrkResult } from './wrk.ts';

export interface TargetInfo {
  readonly id: string;
  readonly label: string;
  readonly port: number;
  /** The reference this row is compared with besides HAProxy (two-hop rows: the HAProxy TLS pair). */
  readonly reference?: string;
}

export interface WorkloadInfo {
  readonly id: string;
  readonly title: string;
  readonly metric: 'rps' | 'mbps' | 'latency';
  readonly path: string;
  readonly connections: number;
  readonly seconds: number;
  readonly thinkMs?: number;
  /** wrk: think times drawn at random around thinkMs (see wrk/report.lua). */
  readonly jitter?: boolean;
  readonly headers?: readonly string[];
  /** Load generator: wrk (HTTP/1.1, the default) or h2load (HTTP/2, `connections` clients x `streams`). */
  readonly tool?: 'wrk' | 'h2load';
  /** h2load: concurrent streams per client (-m). */
  readonly streams?: number;
  readonly targets: readonly TargetInfo[];
}

export interface RunRecord {
  readonly round: number;
  readonly workload: string;
  readonly target: string;
  readonly result: WrkResult | H2loadResult;
}

export interface BenchReport {
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly quick: boolean;
  readonly rounds: number;
  readonly machine: Record<string, unknown> & { cores: number; node: string; loadAvgStart: number[]; loadAvgEnd: number[]; loadAvgPerRound: number[][] };
  readonly meshletMtls: string;
  readonly meshletWorkers: string;
  readonly workloads: readonly WorkloadInfo[];
  readonly runs: readonly RunRecord[];
  readonly memory: {
    readonly idle: Record<string, number | undefined>;
    readonly afterLoad: Record<string, number | undefined>;
    readonly withConnections: Record<string, { rss: number | undefined; open: number; ok: number }>;
    readonly connections: number;
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export interface Summary {
  readonly rps: number;
  readonly mbps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /** Mean request time (h2load prints no percentiles; NaN for wrk runs, which have them). */
  readonly meanMs: number;
  /** Non-2xx/3xx responses plus socket errors, summed over rounds. */
  readonly errors: number;
  readonly rounds: number;
}

/** Median of each figure over the rounds of one workload and target. */
export function summarize(report: Pick<BenchReport, 'runs'>, workload: string, target: string): Summary | undefined {
  const runs = report.runs.filter((r) => r.workload === workload && r.target === target).map((r) => r.result);
  if (runs.length === 0) return undefined;
  const wrkRuns = runs.filter((r): r is WrkResult => !isH2load(r));
  const h2Runs = runs.filter(isH2load);
  return {
    rps: median(runs.map((r) => r.rps)),
    mbps: median(runs.map((r) => r.mbps)),
    p50Ms: median(wrkRuns.map((r) => r.latencyUs.p50 / 1000)),
    p99Ms: median(wrkRuns.map((r) => r.latencyUs.p99 / 1000)),
    p999Ms: median(wrkRuns.map((r) => r.latencyUs.p999 / 1000)),
    meanMs: median(h2Runs.map((r) => r.requestTimeUs.mean / 1000)),
    errors: runs.reduce((n, r) => n + errorCount(r), 0),
    rounds: runs.length,
  };
}

function isH2load(result: WrkResult | H2loadResult): result is H2loadResult {
  return 'tool' in result && result.tool === 'h2load';
}

function errorCount(result: WrkResult | H2loadResult): number {
  if (isH2load(result)) return h2loadErrorCount(result);
  const e = result.errors;
  return e.status + e.connect + e.read + e.write + e.timeout;
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a');
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !b ? 'n/a' : `${(a / b).toFixed(2)}x`);
const mib = (bytes: number | undefined) => (bytes === undefined ? 'n/a' : `${(bytes / 1024 / 1024).toFixed(1)} MiB`);

function throughputTable(report: BenchReport, w: WorkloadInfo): string[] {
  const key = w.metric === 'mbps' ? 'mbps' : 'rps';
  const unit = key === 'mbps' ? 'MB/s' : 'req/s';
  const direct = summarize(report, w.id, 'direct')?.[key];
  const haproxy = summarize(report, w.id, 'haproxy')?.[key];
  const lines = [`| target | ${unit} | ${key === 'mbps' ? 'req/s' : 'p99 ms'} | vs direct | vs HAProxy | vs reference | errors |`, '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'];
  for (const t of w.targets) {
    const s = summarize(report, w.id, t.id);
    if (!s) continue;
    const ref = t.reference ? summarize(report, w.id, t.reference)?.[key] : undefined;
    lines.push(
      `| ${t.label} | ${fmt(s[key], key === 'mbps' ? 0 : 0)} | ${key === 'mbps' ? fmt(s.rps) : fmt(s.p99Ms, 2)} | ${t.id === 'direct' ? '1.00x' : ratio(s[key], direct)} | ${ratio(s[key], haproxy)} | ${t.reference ? `${ratio(s[key], ref)} of ${t.reference}` : ''} | ${s.errors || ''} |`,
    );
  }
  return lines;
}

/** HTTP/2 (h2load): req/s, the mean request time (h2load has no percentiles) and the usual ratios. */
function h2Table(report: BenchReport, w: WorkloadInfo): string[] {
  const direct = summarize(report, w.id, 'direct')?.rps;
  const haproxy = summarize(report, w.id, 'haproxy')?.rps;
  const lines = ['| target | req/s | mean ms | vs direct | vs HAProxy | vs reference | errors |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |'];
  for (const t of w.targets) {
    const s = summarize(report, w.id, t.id);
    if (!s) continue;
    const ref = t.reference ? summarize(report, w.id, t.reference)?.rps : undefined;
    lines.push(
      `| ${t.label} | ${fmt(s.rps)} | ${fmt(s.meanMs, 2)} | ${t.id === 'direct' ? '1.00x' : ratio(s.rps, direct)} | ${ratio(s.rps, haproxy)} | ${t.reference ? `${ratio(s.rps, ref)} of ${t.reference}` : ''} | ${s.errors || ''} |`,
    );
  }
  return lines;
}

function latencyTable(report: BenchReport, w: WorkloadInfo): string[] {
  const direct = summarize(report, w.id, 'direct');
  const lines = ['| target | req/s | p50 ms | p99 ms | p99.9 ms | added p50 | added p99 | added p99.9 | errors |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |'];
  const added = (a: number, b: number | undefined) => (b === undefined ? 'n/a' : `${a - b >= 0 ? '+' : ''}${(a - b).toFixed(2)}`);
  for (const t of w.targets) {
    const s = summarize(report, w.id, t.id);
    if (!s) continue;
    lines.push(
      `| ${t.label} | ${fmt(s.rps)} | ${s.p50Ms.toFixed(2)} | ${s.p99Ms.toFixed(2)} | ${s.p999Ms.toFixed(2)} | ${t.id === 'direct' ? '' : added(s.p50Ms, direct?.p50Ms)} | ${t.id === 'direct' ? '' : added(s.p99Ms, direct?.p99Ms)} | ${t.id === 'direct' ? '' : added(s.p999Ms, direct?.p999Ms)} | ${s.errors || ''} |`,
    );
  }
  return lines;
}

export interface TargetCheck {
  readonly goal: string;
  readonly measured: string;
  readonly reached: boolean | undefined;
}

/** The issue's targets, checked against this run (reported, never asserted in tests). */
export function checkTargets(report: BenchReport): TargetCheck[] {
  const ka = (t: string) => summarize(report, 'keepalive', t)?.rps;
  const checks: TargetCheck[] = [];
  const one = ka('meshlet');
  const hap = ka('haproxy');
  const hp = ka('http-proxy');
  const two = ka('meshlet-2hop');
  const pair = ka('haproxy-tls-pair');
  const r = (a?: number, b?: number) => (a !== undefined && b ? a / b : undefined);
  const oneVsHap = r(one, hap);
  checks.push({ goal: 'one-hop HTTP/1.1 >= 50% of HAProxy req/s', measured: oneVsHap === undefined ? 'n/a' : `${(oneVsHap * 100).toFixed(0)}%`, reached: oneVsHap === undefined ? undefined : oneVsHap >= 0.5 });
  const oneVsHp = r(one, hp);
  checks.push({ goal: 'one-hop HTTP/1.1 >= 2x http-proxy req/s', measured: oneVsHp === undefined ? 'n/a' : `${oneVsHp.toFixed(2)}x`, reached: oneVsHp === undefined ? undefined : oneVsHp >= 2 });
  const twoVsPair = r(two, pair);
  const plaintext = !report.meshletMtls.startsWith('on ');
  checks.push({
    goal: 'two-hop mTLS >= 40% of the HAProxy TLS pair',
    measured: twoVsPair === undefined ? 'n/a' : `${(twoVsPair * 100).toFixed(0)}%${plaintext ? ' (Meshlet pair ran plaintext: not comparable yet)' : ''}`,
    reached: twoVsPair === undefined || plaintext ? undefined : twoVsPair >= 0.4,
  });
  const lat = summarize(report, 'latency', 'meshlet');
  const latDirect = summarize(report, 'latency', 'direct');
  const addedP99 = lat && latDirect ? lat.p99Ms - latDirect.p99Ms : undefined;
  // The lockstep workload (every connection in step, bursts of 10) is shown beside it, not judged.
  const burst = summarize(report, 'lockstep', 'meshlet');
  const burstDirect = summarize(report, 'lockstep', 'direct');
  const burstNote = burst && burstDirect ? ` (in lockstep bursts of 10: ${(burst.p99Ms - burstDirect.p99Ms).toFixed(2)} ms)` : '';
  checks.push({ goal: 'added p99 at ~1k req/s <= 1 ms (one hop)', measured: addedP99 === undefined ? 'n/a' : `${addedP99.toFixed(2)} ms${burstNote}`, reached: addedP99 === undefined ? undefined : addedP99 <= 1 });
  const idle = report.memory.idle.meshlet;
  // 80 MB read as 80 x 10^6 bytes, the stricter of the two readings (80 MiB would be 83.9 x 10^6).
  checks.push({ goal: 'idle RSS <= 80 MB', measured: idle === undefined ? 'n/a' : `${mib(idle)} (${(idle / 1e6).toFixed(1)} MB)`, reached: idle === undefined ? undefined : idle <= 80e6 });
  return checks;
}

export function renderMarkdown(report: BenchReport): string {
  const m = report.machine;
  const lines: string[] = [];
  lines.push(`# Meshlet benchmark ${report.startedAt}${report.quick ? ' (quick trial run: short rounds, not for quoting)' : ''}`, '');
  lines.push(
    `Machine: ${m.cores} cores (${String(m.cpuModel)}), node ${m.node}, kernel ${String(m.kernel)}; ${String(m.wrk)}; ${String(m.haproxy)}; ${String(m.nginx)}. Meshlet ${String(m.meshletCommit)}, workers: ${report.meshletWorkers}.`,
    `CPU layout (taskset): load generator ${JSON.stringify(m.cpuLayout)}. Load average at start ${m.loadAvgStart.map((n) => n.toFixed(2)).join(' ')}, per round ${m.loadAvgPerRound.map((l) => l[0]!.toFixed(2)).join(', ')}, at end ${m.loadAvgEnd.map((n) => n.toFixed(2)).join(' ')} (anything well above ~1 means other work shared the CPUs).`,
    `Each figure is the median of ${report.rounds} interleaved round(s). wrk -t1${m.h2load ? `, ${String(m.h2load)} for HTTP/2` : ''}; backend: nginx static. Meshlet mTLS: ${report.meshletMtls}.`,
    '',
  );
  lines.push('## Targets', '', '| target | measured | reached |', '| --- | --- | --- |');
  for (const c of checkTargets(report)) lines.push(`| ${c.goal} | ${c.measured} | ${c.reached === undefined ? 'not measurable' : c.reached ? 'yes' : 'no'} |`);
  const floor = summarize(report, 'keepalive', 'node-floor')?.rps;
  const hap = summarize(report, 'keepalive', 'haproxy')?.rps;
  const one = summarize(report, 'keepalive', 'meshlet')?.rps;
  if (floor && hap && one) {
    lines.push(
      '',
      `For scale: the Node floor (bench/floor-proxy.js: llhttp both sides, pooled sockets, no features) made ${((floor / hap) * 100).toFixed(0)}% of HAProxy's keep-alive req/s in this run, and Meshlet one hop ${((one / floor) * 100).toFixed(0)}% of the floor's.`,
    );
  }
  const floorPair = summarize(report, 'keepalive', 'node-floor-pair')?.rps;
  const tlsPair = summarize(report, 'keepalive', 'haproxy-tls-pair')?.rps;
  const twoHop = summarize(report, 'keepalive', 'meshlet-2hop')?.rps;
  if (floorPair && tlsPair && twoHop) {
    lines.push(
      '',
      `For scale, two hops: the Node floor pair (two floors, mTLS between them) made ${((floorPair / tlsPair) * 100).toFixed(0)}% of the HAProxy TLS pair's keep-alive req/s, and Meshlet's two hops ${((twoHop / floorPair) * 100).toFixed(0)}% of the floor pair's.`,
    );
  }
  const workers = summarize(report, 'keepalive', 'meshlet-workers')?.rps;
  const threads = summarize(report, 'keepalive', 'haproxy-threads')?.rps;
  if (workers && threads) {
    lines.push('', `On every core (both unpinned, sharing the machine with wrk and the backend): Meshlet \`workers: auto\` made ${((workers / threads) * 100).toFixed(0)}% of the keep-alive req/s of HAProxy with a thread per core.`);
  }
  lines.push('');
  for (const w of report.workloads) {
    if (w.tool === 'h2load') {
      lines.push(`## ${w.title}`, '', `h2load -t1 -c${w.connections} -m${w.streams ?? 1} ${w.seconds}s per round, path ${w.path}, h2c with prior knowledge from the client.`, '');
      lines.push(...h2Table(report, w), '');
      continue;
    }
    lines.push(`## ${w.title}`, '', `wrk -c${w.connections} ${w.seconds}s per round, path ${w.path}${w.headers?.length ? `, headers ${w.headers.join('; ')}` : ''}.`, '');
    lines.push(...(w.metric === 'latency' ? latencyTable(report, w) : throughputTable(report, w)), '');
  }
  const mem = report.memory;
  lines.push('## Memory (RSS)', '', `| process | idle (before traffic) | after the load rounds | with ${mem.connections} open connections |`, '| --- | ---: | ---: | ---: |');
  for (const id of Object.keys(mem.idle)) {
    const held = mem.withConnections[id];
    lines.push(`| ${id} | ${mib(mem.idle[id])} | ${mib(mem.afterLoad[id])} | ${held ? `${mib(held.rss)} (${held.open} open, ${held.ok} answered)` : ''} |`);
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}
