/**
 * `trimMemory`: gives memory back to the OS when the sidecar is idle. V8 grows its young generation
 * while modules load and while requests flow, and an ordinary GC never shrinks it again: an idle
 * sidecar kept ~10 MiB of empty semi-space from its own start-up (docs/performance.md, "Idle memory").
 * The GC V8 runs under memory pressure ("last resort": full collections with the memory-reducing flag)
 * shrinks the young generation and releases free pages. It runs once shortly after start, and again
 * when the process has stopped serving after traffic grew its footprint (five minutes without a busy
 * 30 s interval), never while it is busy: its pause (two full GCs back to back: ~65 ms after start,
 * ~95 ms after load on the bench host) must not land on requests, and the small young generation it
 * leaves slows the next burst for seconds. Idle means whole check intervals and, measured after the
 * last one, the next second too: traffic that resumed in the last moments of an interval barely moves
 * the interval's average, and a trim then stalled the first requests of the burst (~100 ms in a test
 * that started traffic half a second before a check; docs/performance.md, sixth session).
 */
import process from 'node:process';
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { z } from 'zod';

export const trimMemorySchema = z
  .boolean()
  .default(true)
  .describe('Run a memory-reducing GC shortly after start and when the sidecar has been idle for five minutes after traffic grew its memory (default true; needs node --expose-gc, which bin/meshlet.js and the image pass)');

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
  /**
   * Check intervals in a row that must be idle before a trim after traffic. The trim leaves V8 a
   * minimal young generation, and the next burst pays for it for seconds (2-3x the scavenges, p99
   * 12 -> 165 ms in its first 2 s here), so it is for a sidecar that stopped serving, not for a pause
   * between bursts.
   */
  readonly idleIntervals?: number;
  /** After an idle interval, the trim waits this long and runs only if that stretch was idle too. */
  readonly confirmMs?: number;
  /** Trim again only once RSS grew this much past what the last trim left. */
  readonly growthBytes?: number;
  /** For tests: what to call instead of trimMemory, and how to read RSS and utilization. */
  readonly trim?: () => boolean;
  readonly rss?: () => number;
  readonly utilization?: (previous?: EventLoopUtilization) => EventLoopUtilization;
}

/** Schedules trims: once after start, then after a run of idle intervals that follows memory growth. Timers are unref'd. */
export class MemoryTrimmer {
  readonly #options: Required<MemoryTrimmerOptions>;
  readonly #available: boolean;
  #first: NodeJS.Timeout | null = null;
  #interval: NodeJS.Timeout | null = null;
  #confirm: NodeJS.Timeout | null = null;
  #mark: EventLoopUtilization | undefined;
  /** Idle check intervals in a row so far. */
  #idleRun = 0;
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
      idleIntervals: options.idleIntervals ?? 10,
      confirmMs: options.confirmMs ?? 1000,
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
    if (this.#confirm !== null) clearTimeout(this.#confirm);
    this.#first = this.#interval = this.#confirm = null;
  }

  #check(): void {
    const { utilization, idleUtilization, rss, growthBytes } = this.#options;
    const now = utilization();
    const interval = utilization(this.#mark);
    this.#mark = now;
    if (interval.utilization >= idleUtilization) {
      this.#idleRun = 0;
      return;
    }
    this.#idleRun++;
    if (this.#idleRun < this.#options.idleIntervals) return;
    if (rss() - this.#baseline < growthBytes) return;
    if (this.#confirm !== null) return;
    const start = utilization();
    this.#confirm = setTimeout(() => {
      this.#confirm = null;
      // Traffic that just resumed: leave it alone until it has been idle long enough again.
      if (utilization(start).utilization < idleUtilization) this.#run();
      else this.#idleRun = 0;
    }, this.#options.confirmMs).unref();
  }

  #run(): void {
    if (this.#options.trim()) this.trims++;
    this.#baseline = this.#options.rss();
  }
}
