import { describe, expect, it } from 'vitest';
import { h2loadErrorCount, parseDurationUs, parseH2load } from '../../bench/lib/h2load.ts';
import { renderMarkdown, summarize, type BenchReport, type RunRecord } from '../../bench/lib/report.ts';

// Captured from h2load nghttp2/1.52.0 (Debian 12) against nginx 1.22 h2c on loopback.
const OK = `starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for measurements.
Warm-up started for thread #0.
progress: 10% of clients started
progress: 100% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Application protocol: h2c
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.00s, 68970.00 req/s, 6.31MB/s
requests: 137940 total, 138040 started, 137940 done, 137940 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 137941 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 12.63MB (13242788) total, 6.45MB (6759109) headers (space savings 50.51%), 3.81MB (4000260) data
                     min         max         mean         sd        +/- sd
time for request:       55us      5.91ms      1.44ms       405us    90.43%
time for connect:       73us       226us       152us        49us    60.00%
time to 1st byte:      546us      2.05ms      1.29ms       517us    60.00%
req/s           :    6882.55     6918.01     6896.35       10.36    80.00%
`;

// The same server with nginx's default of 1000 requests per connection: it closed every session, and
// h2load does not reconnect, so the streams in flight failed.
const CLOSED = `Application protocol: h2c
Process Request Failure:2
Process Request Failure:12
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 2.00s, 5000.00 req/s, 469.07KB/s
requests: 10074 total, 10090 started, 10074 done, 10000 succeeded, 74 failed, 74 errored, 0 timeout
status codes: 10000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 938.14KB (960660) total, 478.52KB (490000) headers (space savings 50.51%), 283.20KB (290000) data
                     min         max         mean         sd        +/- sd
time for request:       67us      4.67ms      1.64ms       520us    88.43%
`;

// Nothing listening: h2load exits 0 with zeros and never prints an application protocol.
const REFUSED = `Stopped all clients for thread #0

finished in 1.00s, 0.00 req/s, 0B/s
requests: 0 total, 0 started, 0 done, 0 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 0 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 0B (0) total, 0B (0) headers (space savings 0.00%), 0B (0) data
                     min         max         mean         sd        +/- sd
time for request:        0us         0us         0us         0us     0.00%
`;

describe('h2load output parsing', () => {
  it('reads requests, duration, bytes, request times and the protocol', () => {
    const r = parseH2load(OK);
    expect(r.requests).toBe(137_940);
    expect(r.durationUs).toBe(2_000_000);
    expect(r.bytes).toBe(13_242_788);
    expect(r.rps).toBe(68_970);
    expect(r.mbps).toBeCloseTo(6.621394, 6);
    expect(r.requestTimeUs).toEqual({ min: 55, max: 5910, mean: 1440, sd: 405 });
    expect(r.protocol).toBe('h2c');
    expect(h2loadErrorCount(r)).toBe(0);
  });

  it('counts failed streams as errors and derives req/s from the succeeded ones', () => {
    const r = parseH2load(CLOSED);
    expect(r.errors).toEqual({ failed: 74, errored: 74, timeout: 0, status: 0 });
    expect(h2loadErrorCount(r)).toBe(74);
    expect(r.rps).toBe(5000);
  });

  it('leaves the protocol unset when no session was opened', () => {
    const r = parseH2load(REFUSED);
    expect(r.protocol).toBeUndefined();
    expect(r.requests).toBe(0);
    expect(r.rps).toBe(0);
  });

  it('names the missing line when the output is not an h2load summary', () => {
    expect(() => parseH2load('connect: Connection refused\n')).toThrow(/"finished in"/);
    expect(() => parseH2load(OK.replace(/^traffic:.*$/m, ''))).toThrow(/"traffic:"/);
  });

  it('converts h2load durations to microseconds', () => {
    expect(parseDurationUs('55us')).toBe(55);
    expect(parseDurationUs('5.91ms')).toBeCloseTo(5910, 6);
    expect(parseDurationUs('1.5s')).toBe(1_500_000);
    expect(() => parseDurationUs('5min')).toThrow(/5min/);
  });
});

describe('bench report with an HTTP/2 workload', () => {
  const h2 = (out: string, round: number, target: string): RunRecord => ({ round, workload: 'h2', target, result: parseH2load(out) });
  const target = (id: string, reference?: string) => ({ id, label: `label ${id}`, port: 1, ...(reference ? { reference } : {}) });
  const report: BenchReport = {
    startedAt: 't0',
    finishedAt: 't1',
    quick: false,
    rounds: 2,
    machine: { cores: 2, node: 'v24', h2load: 'h2load nghttp2/1.52.0', loadAvgStart: [0, 0, 0], loadAvgEnd: [0, 0, 0], loadAvgPerRound: [[0, 0, 0]] },
    meshletMtls: 'on (security.mtls)',
    meshletWorkers: '1',
    workloads: [
      {
        id: 'h2',
        title: 'HTTP/2 small',
        metric: 'rps',
        tool: 'h2load',
        streams: 10,
        path: '/small',
        connections: 10,
        seconds: 2,
        targets: [target('direct'), target('haproxy'), target('meshlet-2hop', 'haproxy-tls-pair'), target('haproxy-tls-pair')],
      },
    ],
    runs: [h2(OK, 0, 'direct'), h2(OK, 1, 'direct'), h2(OK, 0, 'haproxy'), h2(CLOSED, 1, 'haproxy'), h2(CLOSED, 0, 'meshlet-2hop'), h2(CLOSED, 1, 'meshlet-2hop'), h2(OK, 0, 'haproxy-tls-pair')],
    memory: { idle: {}, afterLoad: {}, withConnections: {}, connections: 10 },
  };

  it('summarizes h2load rounds: median req/s, mean request time, failed streams as errors', () => {
    const s = summarize(report, 'h2', 'haproxy')!;
    expect(s.rps).toBe((68_970 + 5000) / 2);
    expect(s.meanMs).toBeCloseTo((1.44 + 1.64) / 2, 6);
    expect(s.errors).toBe(74);
    expect(s.p99Ms).toBeNaN();
  });

  it('renders req/s, mean ms and the ratios to direct, HAProxy and the TLS pair', () => {
    const md = renderMarkdown(report);
    expect(md).toContain('h2load -t1 -c10 -m10 2s per round, path /small');
    expect(md).toContain('wrk -t1, h2load nghttp2/1.52.0 for HTTP/2;');
    expect(md).toContain('| label direct | 68,970 | 1.44 | 1.00x | 1.86x |  |  |');
    expect(md).toContain('| label meshlet-2hop | 5,000 | 1.64 | 0.07x | 0.14x | 0.07x of haproxy-tls-pair | 148 |');
  });
});
