import { getHeapSpaceStatistics } from 'node:v8';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { configSchema } from '../../sidecar/config/schema.ts';
import { MemoryTrimmer, trimMemory } from '../../sidecar/memory-trim.ts';

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/** Keeps objects alive across scavenges, which is what makes V8 grow the young generation. */
function growYoungGeneration(): void {
  let kept: object[] = [];
  for (let i = 0; i < 400_000; i++) {
    kept.push({ i, text: `item ${i}` });
    if (kept.length > 60_000) kept = [];
  }
}

describe('trimMemory', () => {
  it('runs V8s memory-reducing GC, which shrinks a young generation grown by surviving allocations', () => {
    growYoungGeneration();
    const grown = newSpaceBytes();
    expect(trimMemory()).toBe(true);
    const trimmed = newSpaceBytes();
    // The GC must have given semi-space back (an ordinary GC keeps it at its grown size).
    expect(trimmed).toBeLessThan(grown);
  });
});

describe('MemoryTrimmer', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function fakeTrimmer(state: { rss: number; busy: number }) {
    const calls: number[] = [];
    const trimmer = new MemoryTrimmer({
      firstAfterMs: 1000,
      checkEveryMs: 30_000,
      idleUtilization: 0.01,
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

    // The load stopped: the next idle interval trims.
    state.busy = 0.001;
    vi.advanceTimersByTime(30_000);
    expect(calls).toHaveLength(2);
    expect(trimmer.trims).toBe(2);

    trimmer.stop();
    state.rss = 1000;
    vi.advanceTimersByTime(120_000);
    expect(calls).toHaveLength(2);
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
