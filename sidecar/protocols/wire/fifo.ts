/**
 * A first-in first-out queue on a ring that keeps its storage. A connection's queue of unanswered
 * replies goes from empty to one item and back on every request: `Array#shift` on a one-item array
 * trims its backing store from the left, so the next `push` allocates a new one, ~400 instructions per
 * request each way (docs/performance.md, ninth session). Here a push and a shift are a store and an
 * index step; the ring doubles when full and never shrinks (it is as long as the deepest pipeline seen).
 */
export class Fifo<T> {
  #slots: (T | undefined)[] = [undefined, undefined, undefined, undefined];
  #head = 0;
  #size = 0;

  get length(): number {
    return this.#size;
  }

  /** The oldest item, left in the queue. */
  first(): T | undefined {
    return this.#size === 0 ? undefined : this.#slots[this.#head];
  }

  push(item: T): void {
    if (this.#size === this.#slots.length) this.#grow();
    this.#slots[(this.#head + this.#size) & (this.#slots.length - 1)] = item;
    this.#size++;
  }

  /** Takes the oldest item out. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#slots[this.#head];
    // Not kept alive by the ring once out of the queue.
    this.#slots[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#slots.length - 1);
    this.#size--;
    return item;
  }

  /** Takes `item` out wherever it is, keeping the others in order; false if it was not queued. */
  remove(item: T): boolean {
    const items = this.takeAll();
    const at = items.indexOf(item);
    if (at !== -1) items.splice(at, 1);
    for (const kept of items) this.push(kept);
    return at !== -1;
  }

  /** Empties the queue, returning what it held, oldest first. */
  takeAll(): T[] {
    const items: T[] = [];
    while (this.#size > 0) items.push(this.shift() as T);
    this.#head = 0;
    return items;
  }

  /** The items, oldest first, without taking them out. */
  toArray(): T[] {
    const mask = this.#slots.length - 1;
    const items: T[] = [];
    for (let i = 0; i < this.#size; i++) items.push(this.#slots[(this.#head + i) & mask] as T);
    return items;
  }

  /** Doubles the ring, laying the items out from slot 0 (the length stays a power of two for the mask). */
  #grow(): void {
    const items = this.toArray();
    this.#slots = [...items, ...new Array<T | undefined>(this.#slots.length).fill(undefined)];
    this.#head = 0;
  }
}
