import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { configSchema } from '../../sidecar/config/schema.ts';
import { MemoryTrimmer, trimMemory, type MemoryTrimmerOptions } from '../../sidecar/memory-trim.ts';

const MODULE = join(import.meta.dirname, '..', '..', 'sidecar', 'memory-trim.ts');

/**
 * Runs trimMemory in a fresh node (with or without --expose-gc) after growing the young generation with
 * allocations that survive scavenges; prints its result and the new space before and after.
 */
function trimInChild(nodeFlags: string[]): { trimmed: boolean; before: number; after: number } {
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    const { trimMemory } = await import(${JSON.stringify(MODULE)});
    const newSpace = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
    let kept = [];
    for (let i = 0; i < 400000; i++) { kept.push({ i, text: 'item ' + i }); if (kept.length > 60000) kept = []; }
    kept = null;
    const before = newSpace();
    const trimmed = trimMemory();
    console.log(JSON.stringify({ trimmed, before, after: newSpace() }));`;
  const out = execFileSync(process.execPath, [...nodeFlags, '--input-type=module', '-e', script], { encoding: 'utf8' });
  return JSON.parse(out.trim().split('\n').pop() as string) as { trimmed: boolean; before: number; after: number };
}

describe('trimMemory', () => {
  it('with --expose-gc, runs the memory-reducing GC, which shrinks a young generation grown by surviving allocations', () => {
    const { trimmed, before, after } = trimInChild(['--expose-gc']);
    expect(trimmed).toBe(true);
    // An ordinary GC keeps the young generation at its grown size; this one gives it back.
    expect(after).toBeLessThan(before);
  });

  it('without --expose-gc, does nothing and says so', () => {
    expect(trimInChild([]).trimmed).toBe(false);
    if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
      expect(trimMemory()).toBe(false);
      expect(new MemoryTrimmer().available).toBe(false);
    }
  });
});

describe('MemoryTrimmer', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** One idle interval suffices unless `options` say otherwise (`{}`: the real default). */
  function fakeTrimmer(state: { rss: number; busy: number }, options: Partial<MemoryTrimmerOptions> = { idleIntervals: 1 }) {
    const calls: number[] = [];
    const trimmer = new MemoryTrimmer({
      firstAfterMs: 1000,
      checkEveryMs: 30_000,
      idleUtilization: 0.01,
      ...options,
      growthBytes: 16,
      trim: () => {
        calls.push(Date.now());
        state.rss = 100;
        return true;
      },
      rss: () => state.rss,
      // Each interval reports the utilization the test set for it.
      utilization: () => ({ idle: 0, active: 0, utilization: state.busy }),
    });
    return { trimmer, calls };
  }

  it('trims once after start, then only on idle intervals after RSS grew past the threshold', () => {
    vi.useFakeTimers();
    const state = { rss: 200, busy: 0 };
    const { trimmer, calls } = fakeTrimmer(state);
    expect(trimmer.available).toBe(true);
    trimmer.start();
    vi.advanceTimersByTime(999);
    expect(calls).toHaveLength(0);
    vi.advanceTimersByTime(1);
    expect(calls).toHaveLength(1);

    // Idle but no growth since the last trim: nothing to give back.
    vi.advanceTimersByTime(30_000);
    expect(calls).toHaveLength(1);

    // Grown under load: no trim while busy.
    state.rss = 400;
    state.busy = 0.5;
    vi.advanceTimersByTime(30_000);
    expect(calls).toHaveLength(1);

    // The load stopped: the next idle interval trims, once the second after it was idle too.
    state.busy = 0.001;
    vi.advanceTimersByTime(30_000);
    expect(calls).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(calls).toHaveLength(2);
    expect(trimmer.trims).toBe(2);

    trimmer.stop();
    state.rss = 1000;
    vi.advanceTimersByTime(120_000);
    expect(calls).toHaveLength(2);
  });

  /** A trimmer past its start-up trim (fake timers), its RSS grown enough for another: only idleness is missing. */
  function grownAfterStartupTrim(options?: Partial<MemoryTrimmerOptions>) {
    vi.useFakeTimers();
    const state = { rss: 200, busy: 0 };
    const { trimmer, calls } = fakeTrimmer(state, options);
    trimmer.start();
    vi.advanceTimersByTime(1000);
    expect(calls).toHaveLength(1);
    state.rss = 400;
    return { state, trimmer, calls };
  }

  it('does not trim when traffic resumed at the end of an idle interval: the interval looked idle, the last second was not', () => {
    const { state, trimmer, calls } = grownAfterStartupTrim();
    state.busy = 0.001;
    vi.advanceTimersByTime(30_000);
    // The interval was idle; requests arrive while the trim waits for its confirmation.
    state.busy = 0.3;
    vi.advanceTimersByTime(1000);
    expect(calls).toHaveLength(1);
    // Busy interval: no trim. Then idle again: the trim runs.
    vi.advanceTimersByTime(30_000);
    expect(calls).toHaveLength(1);
    state.busy = 0.001;
    vi.advanceTimersByTime(31_000);
    expect(calls).toHaveLength(2);
    trimmer.stop();
  });

  it('after traffic, trims only once enough check intervals in a row were idle: a pause between bursts keeps the warm young generation', () => {
    const { state, trimmer, calls } = grownAfterStartupTrim({ idleIntervals: 3 });
    // Two idle intervals, then a burst: the count starts over.
    state.busy = 0.001;
    vi.advanceTimersByTime(60_000);
    state.busy = 0.2;
    vi.advanceTimersByTime(30_000);
    state.busy = 0.001;
    vi.advanceTimersByTime(61_000);
    expect(calls).toHaveLength(1);
    // The third idle interval in a row (and the second after it) trims.
    vi.advanceTimersByTime(30_000);
    expect(calls).toHaveLength(2);
    trimmer.stop();
  });

  it('waits five minutes of idle intervals by default', () => {
    const { trimmer, calls } = grownAfterStartupTrim({});
    vi.advanceTimersByTime(270_000);
    expect(calls).toHaveLength(1);
    vi.advanceTimersByTime(31_000);
    expect(calls).toHaveLength(2);
    trimmer.stop();
  });

  it('stop() while a trim waits for its confirmation cancels it', () => {
    const { trimmer, calls } = grownAfterStartupTrim();
    vi.advanceTimersByTime(30_000);
    trimmer.stop();
    vi.advanceTimersByTime(5000);
    expect(calls).toHaveLength(1);
  });

  it('stop() before the first trim cancels it', () => {
    vi.useFakeTimers();
    const { trimmer, calls } = fakeTrimmer({ rss: 200, busy: 0 });
    trimmer.start();
    trimmer.stop();
    vi.advanceTimersByTime(60_000);
    expect(calls).toHaveLength(0);
  });
});

describe('trimMemory config', () => {
  it('is on by default and refuses a non-boolean, naming the field', () => {
    expect(configSchema.parse({ service: { name: 'a', port: 1 } }).trimMemory).toBe(true);
    const result = configSchema.safeParse({ service: { name: 'a', port: 1 }, trimMemory: 'yes' });
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.path).toEqual(['trimMemory']);
  });
});
