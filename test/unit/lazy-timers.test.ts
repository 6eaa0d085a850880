import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadlineTimer, QuietWatch } from '../../sidecar/protocols/wire/lazy-timers.ts';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
  // The module reads perf_hooks' performance, which faking globalThis.performance would not reach.
  vi.spyOn(performance, 'now').mockImplementation(() => Date.now());
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe('DeadlineTimer', () => {
  it('fires at the deadline, not before', () => {
    const fired = vi.fn();
    const timer = new DeadlineTimer(fired);
    timer.set(performance.now() + 100);
    vi.advanceTimersByTime(99);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('takes later deadlines without a timer operation each, and re-arms for the one in force when it fires', () => {
    const fired = vi.fn();
    const timer = new DeadlineTimer(fired);
    const arms = vi.spyOn(globalThis, 'setTimeout');
    // A request every 10 ms on one connection, each with 100 ms to get its head.
    for (let i = 0; i < 10; i++) {
      timer.set(performance.now() + 100);
      vi.advanceTimersByTime(10);
    }
    expect(arms).toHaveBeenCalledTimes(2); // the first set, and the re-arm at 100 ms for the 10th deadline (190 ms)
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(89);
    expect(fired).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('re-arms for a deadline earlier than the pending timer', () => {
    const fired = vi.fn();
    const timer = new DeadlineTimer(fired);
    timer.set(performance.now() + 500);
    timer.set(performance.now() + 50);
    vi.advanceTimersByTime(50);
    expect(fired).toHaveBeenCalledTimes(1);
  });

  it('does not fire once the deadline is lifted, and leaves no timer after clear()', () => {
    const fired = vi.fn();
    const timer = new DeadlineTimer(fired);
    timer.set(performance.now() + 100);
    timer.set(Infinity);
    vi.advanceTimersByTime(1000);
    expect(fired).not.toHaveBeenCalled();
    timer.set(performance.now() + 100);
    expect(vi.getTimerCount()).toBe(1);
    timer.clear();
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(1000);
    expect(fired).not.toHaveBeenCalled();
  });
});

describe('QuietWatch', () => {
  it('calls onQuiet only after the limit of silence, and within a quarter of it after', () => {
    const quiet = vi.fn();
    const watch = new QuietWatch(() => 7, quiet);
    watch.watch(400);
    vi.advanceTimersByTime(499);
    expect(quiet).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(quiet).toHaveBeenCalledTimes(1);
    watch.stop();
  });

  it('counts silence from the last movement of the counter: never early, whenever it moved between looks', () => {
    let count = 0;
    const quiet = vi.fn();
    const watch = new QuietWatch(() => count, quiet);
    watch.watch(400);
    vi.advanceTimersByTime(350);
    count++; // halfway between the looks at 300 and 400 ms
    vi.advanceTimersByTime(399);
    expect(quiet).not.toHaveBeenCalled(); // 749 ms: 399 ms since the movement
    vi.advanceTimersByTime(101);
    expect(quiet).toHaveBeenCalledTimes(1); // 850 ms: met at most a quarter late
    watch.stop();
  });

  it('atMost: calls onQuiet before the limit of silence is up, never more than a quarter before', () => {
    const quiet = vi.fn();
    const watch = new QuietWatch(() => 0, quiet, 'atMost');
    watch.watch(400);
    vi.advanceTimersByTime(150);
    watch.restart(); // a release: the count starts again from here
    vi.advanceTimersByTime(299);
    expect(quiet).not.toHaveBeenCalled(); // 299 ms after the restart: under three quarters
    vi.advanceTimersByTime(101);
    expect(quiet).toHaveBeenCalledTimes(1); // at 350 ms after it (the look at 500), before 400
    watch.stop();
  });

  it('restarts the count on watch() and restart(), without a timer operation while the limit is unchanged', () => {
    const quiet = vi.fn();
    const watch = new QuietWatch(() => 0, quiet);
    const intervals = vi.spyOn(globalThis, 'setInterval');
    watch.watch(400);
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(300);
      if (i % 2 === 0) watch.watch(400);
      else watch.restart();
    }
    expect(quiet).not.toHaveBeenCalled();
    expect(intervals).toHaveBeenCalledTimes(1);
    watch.watch(800); // a new limit: a new interval
    expect(intervals).toHaveBeenCalledTimes(2);
    expect(vi.getTimerCount()).toBe(1);
    watch.stop();
    expect(vi.getTimerCount()).toBe(0);
  });
});
