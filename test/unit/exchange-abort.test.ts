import { describe, expect, it } from 'vitest';
import { ExchangeAbort } from '../../sidecar/protocols/exchange-abort.ts';
import { abortWatchOf, exchangeWithSignal, type ProxyExchange } from '../../sidecar/protocols/exchange.ts';

describe('ExchangeAbort', () => {
  it('calls its listeners once, in the order added, with the reason readable', () => {
    const abort = new ExchangeAbort();
    const calls: string[] = [];
    abort.addEventListener('abort', () => calls.push(`a:${String(abort.reason)}`));
    abort.addEventListener('abort', () => calls.push('b'));
    abort.addEventListener('abort', () => calls.push('c'));
    expect(abort.aborted).toBe(false);
    abort.abort('gone');
    abort.abort('again');
    expect(calls).toEqual(['a:gone', 'b', 'c']);
    expect(abort.aborted).toBe(true);
    expect(abort.reason).toBe('gone');
  });

  it('adds a listener once however often it is added, never after the abort, and forgets removed ones in order', () => {
    const abort = new ExchangeAbort();
    const calls: string[] = [];
    const a = () => calls.push('a');
    const b = () => calls.push('b');
    const c = () => calls.push('c');
    abort.addEventListener('abort', a);
    abort.addEventListener('abort', a);
    abort.addEventListener('abort', b);
    abort.addEventListener('abort', b);
    abort.addEventListener('abort', c);
    abort.removeEventListener('abort', a); // b moves into the first slot
    abort.addEventListener('abort', a); // after c
    abort.removeEventListener('abort', c);
    abort.removeEventListener('abort', () => calls.push('never added'));
    abort.abort();
    expect(calls).toEqual(['b', 'a']);
    abort.addEventListener('abort', c);
    abort.abort();
    expect(calls).toEqual(['b', 'a']);
  });

  it('aborts without a reason as an AbortController does: a DOMException named AbortError', () => {
    const abort = new ExchangeAbort();
    abort.abort();
    expect(abort.reason).toBeInstanceOf(DOMException);
    expect((abort.reason as DOMException).name).toBe('AbortError');
  });

  it('makes its AbortSignal only when asked, aborted with the same reason before or after', () => {
    const early = new ExchangeAbort();
    const seen: unknown[] = [];
    const signal = early.signal;
    expect(early.signal).toBe(signal);
    signal.addEventListener('abort', () => seen.push(signal.reason));
    const reason = new Error('client closed the connection');
    early.abort(reason);
    expect(signal.aborted).toBe(true);
    expect(seen).toEqual([reason]);

    const late = new ExchangeAbort();
    late.abort(reason);
    expect(late.signal.aborted).toBe(true);
    expect(late.signal.reason).toBe(reason);
  });

  it('runs every listener when one throws, then rethrows the first error', () => {
    const abort = new ExchangeAbort();
    const calls: string[] = [];
    abort.addEventListener('abort', () => {
      throw new Error('first bug');
    });
    abort.addEventListener('abort', () => {
      calls.push('second');
      throw new Error('second bug');
    });
    const signal = abort.signal;
    expect(() => abort.abort('x')).toThrow('first bug');
    expect(calls).toEqual(['second']);
    expect(signal.aborted).toBe(true);
    expect(abort.aborted).toBe(true);
  });
});

describe('abortWatchOf', () => {
  const exchange = (signal: AbortSignal, abortWatch?: ExchangeAbort): ProxyExchange =>
    ({ headers: {}, signal, abortWatch, tried: [], attempts: 0, notes: new Map() }) as unknown as ProxyExchange;

  it('watches the exchange abort when there is one, else the signal', () => {
    const watch = new ExchangeAbort();
    expect(abortWatchOf(exchange(new AbortController().signal, watch))).toBe(watch);
    const signal = new AbortController().signal;
    expect(abortWatchOf(exchange(signal))).toBe(signal);
  });

  it('a copy with a signal of its own (a deadline) watches that signal, not the original abort', () => {
    const watch = new ExchangeAbort();
    const deadline = new AbortController();
    const copy = exchangeWithSignal(exchange(watch.signal, watch), deadline.signal);
    expect(abortWatchOf(copy)).toBe(deadline.signal);
    deadline.abort('deadline');
    expect(abortWatchOf(copy).aborted).toBe(true);
    expect(watch.aborted).toBe(false);
  });
});
