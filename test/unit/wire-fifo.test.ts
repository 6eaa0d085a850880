import { describe, expect, it } from 'vitest';
import { Fifo } from '../../sidecar/protocols/wire/fifo.ts';

describe('Fifo', () => {
  it('hands items out oldest first across wrap-arounds and growth, as an array queue would', () => {
    const fifo = new Fifo<number>();
    const model: number[] = [];
    let next = 0;
    // A fixed pseudo-random walk of pushes and shifts: depths 0..40, so the ring wraps and doubles.
    let seed = 7;
    for (let step = 0; step < 5000; step++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      if (seed % 3 !== 0 || model.length === 0) {
        if (model.length < 40) {
          fifo.push(next);
          model.push(next++);
        }
      } else {
        expect(fifo.shift()).toBe(model.shift());
      }
      expect(fifo.length).toBe(model.length);
      expect(fifo.first()).toBe(model[0]);
    }
    expect(fifo.toArray()).toEqual(model);
    expect(fifo.takeAll()).toEqual(model);
    expect(fifo.length).toBe(0);
    expect(fifo.shift()).toBeUndefined();
    expect(fifo.first()).toBeUndefined();
  });

  it('removes an item from the middle keeping the order, and says whether it was there', () => {
    const fifo = new Fifo<string>();
    for (const item of ['x', 'a', 'b', 'c', 'd', 'e']) fifo.push(item);
    fifo.shift(); // the ring starts at slot 1 now, and has grown once
    expect(fifo.remove('c')).toBe(true);
    expect(fifo.remove('c')).toBe(false);
    expect(fifo.toArray()).toEqual(['a', 'b', 'd', 'e']);
    fifo.push('f');
    expect(fifo.takeAll()).toEqual(['a', 'b', 'd', 'e', 'f']);
  });
});
