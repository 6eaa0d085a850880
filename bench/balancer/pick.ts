/**
 * Micro-benchmark of one pick per balancer (the per-request cost a picker adds), for 10 and 100
 * endpoints, with and without a hash key. Pure CPU, no sockets:
 *
 *   node bench/balancer/pick.ts [--ms 300]
 */
import { parseArgs } from 'node:util';
import { createPicker } from '../../sidecar/balancer/index.ts';
import { recordLatency } from '../../sidecar/balancer/peak-ewma.ts';
import { EndpointState } from '../../sidecar/cluster/endpoint-state.ts';
import type { Balancer } from '../../sidecar/config/schema.ts';
import { makeEndpoint } from '../../sidecar/discovery/types.ts';

const { values } = parseArgs({ options: { ms: { type: 'string', default: '300' } } });
const budgetMs = Number(values.ms);

const KINDS: Balancer[] = ['round_robin', 'least_request', 'random', 'p2c_ewma', 'ring_hash', 'maglev'];
const KEYS = Array.from({ length: 1024 }, (_, i) => `user-${i}`);

/** Runs `fn` in batches for about `budgetMs`; returns nanoseconds per call. */
function measure(fn: (i: number) => void): number {
  for (let i = 0; i < 10_000; i++) fn(i);
  let calls = 0;
  const start = performance.now();
  while (performance.now() - start < budgetMs) {
    for (let i = 0; i < 10_000; i++) fn(calls + i);
    calls += 10_000;
  }
  return ((performance.now() - start) * 1e6) / calls;
}

const rows: string[] = ['| balancer | endpoints | ns/pick | ns/pick (sticky wrapper) |', '|---|---|---|---|'];
for (const n of [10, 100]) {
  const endpoints = Array.from({ length: n }, (_, i) => new EndpointState(makeEndpoint({ address: '10.0.0.1', port: 10_000 + i })));
  endpoints.forEach((ep, i) => recordLatency(ep, 5 + (i % 7), 0));
  for (const kind of KINDS) {
    const hashed = kind === 'ring_hash' || kind === 'maglev';
    const cost = (sticky: boolean) => {
      const picker = createPicker(kind, { sticky });
      picker.update(endpoints);
      return measure((i) => picker.pick(endpoints, hashed ? { hashKey: KEYS[i & 1023] } : {}));
    };
    rows.push(`| ${kind} | ${n} | ${cost(false).toFixed(0)} | ${cost(true).toFixed(0)} |`);
  }
}
process.stdout.write(`${rows.join('\n')}\n`);
