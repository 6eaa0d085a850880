import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConnectionTimer } from '../../sidecar/protocols/wire/connection-timer.ts';

describe('ConnectionTimer (one re-armed timer per connection)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires after the armed duration; arming again pushes it back, a new duration replaces it, 0 disables it', () => {
    const fire = vi.fn();
    const timer = new ConnectionTimer(fire);
    timer.arm(100);
    vi.advanceTimersByTime(60);
    timer.arm(100);
    vi.advanceTimersByTime(60);
    expect(fire).not.toHaveBeenCalled();
    vi.advanceTimersByTime(40);
    expect(fire).toHaveBeenCalledTimes(1);
    timer.arm(100); // a fired timer is re-armed
    vi.advanceTimersByTime(100);
    expect(fire).toHaveBeenCalledTimes(2);
    timer.arm(300);
    expect(timer.ms).toBe(300);
    vi.advanceTimersByTime(299);
    expect(fire).toHaveBeenCalledTimes(2);
    timer.arm(0);
    vi.advanceTimersByTime(1000);
    expect(fire).toHaveBeenCalledTimes(2);
  });

  it('stays stopped after clear(), and arm() afterwards starts a fresh timer', () => {
    const fire = vi.fn();
    const timer = new ConnectionTimer(fire);
    timer.arm(100);
    timer.clear();
    timer.refresh();
    vi.advanceTimersByTime(500);
    expect(fire).not.toHaveBeenCalled();
    expect(timer.ms).toBe(0);
    timer.arm(100);
    vi.advanceTimersByTime(100);
    expect(fire).toHaveBeenCalledTimes(1);
  });
});
