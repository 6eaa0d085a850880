/**
 * The parts of prom-client Meshlet uses, loaded file by file. prom-client's index loads everything:
 * its Pushgateway (node:http, node:https, node:zlib), the cluster aggregator, Summary with tdigest, and
 * the default process metrics, whose CPU counter loads @opentelemetry/api for exemplars. That was about
 * 16 MB of an idle sidecar's RSS for code it never runs (measured: bench/memory/idle.ts).
 * prom-client 15 has no "exports" map, so its lib/ files are public paths; the types come from its index.
 */
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

const require = createRequire(import.meta.url);

/** prom-client's Registry class (lib/registry.js). */
export const Registry: typeof Prom.Registry = require('prom-client/lib/registry.js');
/** prom-client's Counter class (lib/counter.js). */
export const Counter: typeof Prom.Counter = require('prom-client/lib/counter.js');
/** prom-client's Gauge class (lib/gauge.js). */
export const Gauge: typeof Prom.Gauge = require('prom-client/lib/gauge.js');
export type Registry = Prom.Registry;
export type Counter<T extends string = string> = Prom.Counter<T>;
export type Gauge<T extends string = string> = Prom.Gauge<T>;

/**
 * Registers prom-client's default process_* and nodejs_* metrics in `registry`, loading them only now:
 * metrics.ts calls this on the first scrape that wants them (it made their registry then already), so
 * a sidecar nobody scrapes never loads them, nor the @opentelemetry/api they pull in.
 */
export function collectDefaultMetrics(registry: Prom.Registry): void {
  const collect: typeof Prom.collectDefaultMetrics = require('prom-client/lib/defaultMetrics.js');
  collect({ register: registry });
}
