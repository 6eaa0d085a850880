import { describe, expect, it } from 'vitest';
import { checkTargets, median, renderMarkdown, summarize, type BenchReport, type RunRecord } from '../../bench/lib/report.ts';
import type { WrkResult } from '../../bench/lib/wrk.ts';

function result(rps: number, p99Ms = 1, status = 0): WrkResult {
  return {
    requests: rps * 5,
    durationUs: 5e6,
    bytes: rps * 5 * 100,
    errors: { connect: 0, read: 0, write: 0, status, timeout: 0 },
    latencyUs: { p50: 100, p90: 200, p99: p99Ms * 1000, p999: p99Ms * 2000, max: 50_000, mean: 150 },
    rps,
    mbps: (rps * 100) / 1e6,
  };
}

function report(runs: RunRecord[], mtls = 'on (security.mtls)', idleRss = 70 * 1024 * 1024): BenchReport {
  const target = (id: string) => ({ id, label: id, port: 1 });
  return {
    startedAt: 't0',
    finishedAt: 't1',
    quick: false,
    rounds: 3,
    machine: { cores: 2, node: 'v24', loadAvgStart: [0.1, 0.1, 0.1], loadAvgEnd: [0.2, 0.2, 0.2], loadAvgPerRound: [[0.1, 0, 0]] },
    meshletMtls: mtls,
    meshletWorkers: '1',
    workloads: [
      { id: 'keepalive', title: 'keep-alive', metric: 'rps', path: '/', connections: 50, seconds: 5, targets: ['direct', 'haproxy', 'http-proxy', 'meshlet', 'meshlet-2hop', 'haproxy-tls-pair'].map(target) },
      { id: 'latency', title: 'latency', metric: 'latency', path: '/', connections: 10, seconds: 5, targets: ['direct', 'meshlet'].map(target) },
    ],
    runs,
    memory: { idle: { meshlet: idleRss }, afterLoad: {}, withConnections: {}, connections: 10_000 },
  };
}

const rounds = (workload: string, target: string, values: Array<[number, number?]>): RunRecord[] =>
  values.map(([rps, p99], round) => ({ round, workload, target, result: result(rps, p99) }));

describe('bench report', () => {
  it('takes the median of odd and even round counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('summarizes each target by its median round and counts errors', () => {
    const runs = [...rounds('keepalive', 'meshlet', [[100], [300], [200]]), { round: 3, workload: 'keepalive', target: 'meshlet', result: result(250, 1, 7) }];
    const s = summarize({ runs }, 'keepalive', 'meshlet')!;
    expect(s.rps).toBe(225);
    expect(s.errors).toBe(7);
    expect(summarize({ runs }, 'keepalive', 'haproxy')).toBeUndefined();
  });

  it('checks the issue targets from medians: reached and missed', () => {
    const runs = [
      ...rounds('keepalive', 'haproxy', [[40_000], [50_000], [45_000]]),
      ...rounds('keepalive', 'http-proxy', [[5000], [5000], [5000]]),
      ...rounds('keepalive', 'meshlet', [[25_000], [20_000], [24_000]]),
      ...rounds('keepalive', 'meshlet-2hop', [[3000], [3000], [3000]]),
      ...rounds('keepalive', 'haproxy-tls-pair', [[15_000], [15_000], [15_000]]),
      ...rounds('latency', 'direct', [[1000, 1.0], [1000, 1.2], [1000, 1.1]]),
      ...rounds('latency', 'meshlet', [[1000, 1.5], [1000, 1.9], [1000, 1.7]]),
    ];
    const checks = checkTargets(report(runs));
    expect(checks.map((c) => [c.measured, c.reached])).toEqual([
      ['53%', true], // 24k of 45k
      ['4.80x', true],
      ['20%', false],
      ['0.60 ms', true],
      ['70.0 MiB (73.4 MB)', true],
    ]);
    expect(renderMarkdown(report(runs))).toContain('| one-hop HTTP/1.1 >= 50% of HAProxy req/s | 53% | yes |');
  });

  it('judges added p99 on the spread-out latency run and shows the lockstep bursts beside it', () => {
    const runs = [
      ...rounds('latency', 'direct', [[1000, 0.3]]),
      ...rounds('latency', 'meshlet', [[1000, 1.1]]),
      ...rounds('lockstep', 'direct', [[1000, 0.6]]),
      ...rounds('lockstep', 'meshlet', [[1000, 4.6]]),
    ];
    const check = checkTargets(report(runs)).find((c) => c.goal.startsWith('added p99'));
    expect(check).toEqual({ goal: 'added p99 at ~1k req/s <= 1 ms (one hop)', measured: '0.80 ms (in lockstep bursts of 10: 4.00 ms)', reached: true });
  });

  it('reads the idle RSS target as 80 x 10^6 bytes, not 80 MiB', () => {
    const idleCheck = (bytes: number) => checkTargets(report([], undefined, bytes))[4]!;
    expect(idleCheck(79_900_000)).toEqual({ goal: 'idle RSS <= 80 MB', measured: '76.2 MiB (79.9 MB)', reached: true });
    // 77 MiB is under 80 MiB but over 80 MB.
    expect(idleCheck(77 * 1024 * 1024).reached).toBe(false);
  });

  it('scales Meshlet against the Node floor proxy when the run has one, and says nothing otherwise', () => {
    const runs = [
      ...rounds('keepalive', 'haproxy', [[40_000]]),
      ...rounds('keepalive', 'meshlet', [[12_000]]),
      ...rounds('keepalive', 'node-floor', [[24_000]]),
    ];
    expect(renderMarkdown(report(runs))).toContain("made 60% of HAProxy's keep-alive req/s in this run, and Meshlet one hop 50% of the floor's.");
    expect(renderMarkdown(report(runs.filter((r) => r.target !== 'node-floor')))).not.toContain('Node floor');
  });

  it('scales the two hops against the Node floor pair when the run has one, and says nothing otherwise', () => {
    const runs = [
      ...rounds('keepalive', 'haproxy-tls-pair', [[20_000]]),
      ...rounds('keepalive', 'meshlet-2hop', [[2_000]]),
      ...rounds('keepalive', 'node-floor-pair', [[3_000]]),
    ];
    expect(renderMarkdown(report(runs))).toContain("the Node floor pair (two floors, mTLS between them) made 15% of the HAProxy TLS pair's keep-alive req/s, and Meshlet's two hops 67% of the floor pair's.");
    expect(renderMarkdown(report(runs.filter((r) => r.target !== 'node-floor-pair')))).not.toContain('floor pair');
  });

  it('compares the workers row with HAProxy on every core when both ran', () => {
    const runs = [...rounds('keepalive', 'meshlet-workers', [[9000]]), ...rounds('keepalive', 'haproxy-threads', [[30_000]])];
    expect(renderMarkdown(report(runs))).toContain('Meshlet `workers: auto` made 30% of the keep-alive req/s of HAProxy with a thread per core.');
    expect(renderMarkdown(report(runs.filter((r) => r.target !== 'haproxy-threads')))).not.toContain('thread per core');
  });

  it('does not judge the two-hop mTLS target when Meshlet ran its pair in plaintext', () => {
    const runs = [...rounds('keepalive', 'meshlet-2hop', [[9000]]), ...rounds('keepalive', 'haproxy-tls-pair', [[10_000]])];
    const twoHop = checkTargets(report(runs, 'not in the config schema yet'))[2]!;
    expect(twoHop.reached).toBeUndefined();
    expect(twoHop.measured).toContain('plaintext');
  });
});
