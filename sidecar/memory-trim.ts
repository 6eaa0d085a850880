/**
 * `trimMemory`: gives memory back to the OS when the sidecar is idle. V8 grows its young generation
 * while modules load and while requests flow, and an ordinary GC never shrinks it again: an idle
 * sidecar kept ~10 MiB of empty semi-space from its own start-up (docs/performance.md, "Idle memory").
 * The GC V8 runs under memory pressure ("last resort": full collections with the memory-reducing flag)
 * shrinks the young generation and releases free pages. It runs once shortly after start, and again
 * when the process has gone idle after traffic grew its footprint, never while it is busy: its pause
 * (~20 ms on a small heap) must not land on requests.
 */
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { z } from 'zod';

export const trimMemorySchema = z
  .boolean()
  .default(true)
  .describe('Run a memory-reducing GC shortly after start and whenever the sidecar goes idle after traffic grew its memory (default true; needs node --expose-gc, which bin/meshlet.js and the image pass)');

type GcFunction = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * V8's gc() extension, present when node was started with --expose-gc (bin/meshlet.js, the image and
 * the injected containers pass it). It is not turned on at run time on purpose: reaching it then needs a
 * second vm context, and merely creating one cost the request path ~15% throughput and doubled p99
 * (measured with bench/ab.ts, docs/performance.md).
 */
function exposedGc(): GcFunction | null {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === 'function' ? (gc as GcFunction) : null;
}

/** Runs the memory-reducing GC now; false when node was started without --expose-gc. */
export function trimMemory(): boolean {
  const gc = exposedGc();
  if (gc === null) return false;
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return true;
}

export interface MemoryTrimmerOptions {
  /** First trim this long after start (start-up garbage is gone, the first requests not yet in). */
  readonly firstAfterMs?: number;
  /** How often idleness is checked. */
  readonly checkEveryMs?: number;
  /** Busy below this event-loop utilization over one check interval counts as idle. */
  readonly idleUtilization?: number;
  /** Trim again only once RSS grew this much past what the last trim left. */
  readonly growthBytes?: number;
  /** For tests: what to call instead of trimMemory, and how to read RSS and utilization. */
  readonly trim?: () => boolean;
  readonly rss?: () => number;
  readonly utilization?: (previous?: EventLoopUtilization) => EventLoopUtilization;
}

/** Schedules trims: once after start, then on idle intervals that follow memory growth. Timers are unref'd. */
export class MemoryTrimmer {
  readonly #options: Required<MemoryTrimmerOptions>;
  readonly #available: boolean;
  #first: NodeJS.Timeout | null = null;
  #interval: NodeJS.Timeout | null = null;
  #mark: EventLoopUtilization | undefined;
  /** RSS right after the last trim: growth is measured from here. */
  #baseline = 0;
  /** Trims made so far. */
  trims = 0;

  constructor(options: MemoryTrimmerOptions = {}) {
    this.#available = options.trim !== undefined || exposedGc() !== null;
    this.#options = {
      firstAfterMs: options.firstAfterMs ?? 1000,
      checkEveryMs: options.checkEveryMs ?? 30_000,
      idleUtilization: options.idleUtilization ?? 0.01,
      growthBytes: options.growthBytes ?? 16 * 1024 * 1024,
      trim: options.trim ?? trimMemory,
      rss: options.rss ?? (() => process.memoryUsage.rss()),
      utilization: options.utilization ?? ((previous) => performance.eventLoopUtilization(previous)),
    };
  }

  /** False when trims cannot run (node without --expose-gc and no `trim` given). */
  get available(): boolean {
    return this.#available;
  }

  start(): void {
    if (this.#first !== null || this.#interval !== null) return;
    this.#first = setTimeout(() => {
      this.#first = null;
      this.#run();
      this.#mark = this.#options.utilization();
      this.#interval = setInterval(() => this.#check(), this.#options.checkEveryMs).unref();
    }, this.#options.firstAfterMs).unref();
  }

  stop(): void {
    if (this.#first !== null) clearTimeout(this.#first);
    if (this.#interval !== null) clearInterval(this.#interval);
    this.#first = this.#interval = null;
  }

  #check(): void {
    const { utilization, idleUtilization, rss, growthBytes } = this.#options;
    const now = utilization();
    const interval = utilization(this.#mark);
    this.#mark = now;
    if (interval.utilization >= idleUtilization) return;
    if (rss() - this.#baseline < growthBytes) return;
    this.#run();
  }

  #run(): void {
    if (this.#options.trim()) this.trims++;
    this.#baseline = this.#options.rss();
  }
}
