import { describe, expect, it } from 'vitest';
import { type AttemptFacts, type AttemptWatch, composeChain, watchAttempts } from '../../sidecar/protocols/attempt-watch.ts';
import type { Forward, ProxyExchange, UpstreamResponse } from '../../sidecar/protocols/exchange.ts';

const RESPONSE = { statusCode: 200 } as UpstreamResponse;

function exchange(): ProxyExchange {
  return { tried: [] as unknown[], notes: new Map() } as unknown as ProxyExchange;
}

/** A watch that logs what it sees into `log` under `name`. */
function logging(name: string, log: string[], overrides: Partial<AttemptWatch> = {}): AttemptWatch {
  return {
    start: () => {
      log.push(`${name}.start`);
      return undefined;
    },
    response: () => log.push(`${name}.response`),
    failure: (_x, err, attempt) => log.push(`${name}.failure(${(err as Error).message}${attempt ? '' : ', not made'})`),
    ...overrides,
  };
}

/** An endpoint step that records the call and answers (or fails with `fail`). */
function endpoint(log: string[], fail?: string): Forward {
  return async (x) => {
    log.push('forward');
    (x.tried as unknown[]).push('endpoint');
    if (fail) throw new Error(fail);
    return RESPONSE;
  };
}

describe('attempt watches', () => {
  it('start outermost first and hear the response innermost first, as nested layers did', async () => {
    const log: string[] = [];
    const forward = watchAttempts([logging('a', log), logging('b', log), logging('c', log)], endpoint(log));
    await expect(forward(exchange())).resolves.toBe(RESPONSE);
    expect(log).toEqual(['a.start', 'b.start', 'c.start', 'forward', 'c.response', 'b.response', 'a.response']);
  });

  it('hear a failed attempt innermost first, with its facts', async () => {
    const log: string[] = [];
    let facts: AttemptFacts | undefined;
    const forward = watchAttempts([logging('a', log), logging('b', log, { failure: (_x, _e, attempt) => void (facts = attempt) })], endpoint(log, 'reset'));
    await expect(forward(exchange())).rejects.toThrow('reset');
    expect(log).toEqual(['a.start', 'b.start', 'forward', 'a.failure(reset)']);
    expect(facts?.triedBefore).toBe(0);
    expect(typeof facts?.startedAt).toBe('number');
  });

  it('a start that refuses fails only the watches started before it, and no attempt is made', async () => {
    const log: string[] = [];
    const refusing = logging('b', log, {
      start: () => {
        throw new Error('circuit open');
      },
    });
    const forward = watchAttempts([logging('a', log), refusing, logging('c', log)], endpoint(log));
    await expect(forward(exchange())).rejects.toThrow('circuit open');
    expect(log).toEqual(['a.start', 'a.failure(circuit open, not made)']);
  });

  it('waits for a start that returns a promise, takes the facts after it, and fails the earlier watches if it rejects', async () => {
    const log: string[] = [];
    let admit!: () => void;
    const queued = logging('b', log, { start: () => new Promise<void>((resolve) => (admit = resolve)) });
    let facts: AttemptFacts | undefined;
    const last = logging('c', log, { response: (_x, _r, attempt) => void (facts = attempt) });
    const forward = watchAttempts([logging('a', log), queued, last], endpoint(log));
    const pending = forward(exchange());
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(log).toEqual(['a.start']);
    const admittedAt = performance.now();
    admit();
    await expect(pending).resolves.toBe(RESPONSE);
    expect(log).toEqual(['a.start', 'c.start', 'forward', 'b.response', 'a.response']); // c records its facts instead of logging
    expect(facts!.startedAt).toBeGreaterThanOrEqual(admittedAt);

    const rejected: string[] = [];
    const overflow = logging('b', rejected, { start: () => Promise.reject(new Error('overflow')) });
    await expect(watchAttempts([logging('a', rejected), overflow], endpoint(rejected))(exchange())).rejects.toThrow('overflow');
    expect(rejected).toEqual(['a.start', 'a.failure(overflow, not made)']);
  });

  it('a watch that throws on the response fails the attempt for the watches outside it', async () => {
    const log: string[] = [];
    const broken = logging('b', log, {
      response: () => {
        throw new Error('bug');
      },
    });
    const forward = watchAttempts([logging('a', log), broken, logging('c', log)], endpoint(log));
    await expect(forward(exchange())).rejects.toThrow('bug');
    expect(log).toEqual(['a.start', 'b.start', 'c.start', 'forward', 'c.response', 'a.failure(bug)']);
  });

  it('composeChain shares a promise among adjacent watches only: a layer between them splits them', async () => {
    const log: string[] = [];
    const layer = (next: Forward): Forward => (x) => {
      log.push('layer');
      return next(x);
    };
    const forward = composeChain([logging('a', log), logging('b', log), layer, logging('c', log)], endpoint(log));
    await expect(forward(exchange())).resolves.toBe(RESPONSE);
    expect(log).toEqual(['a.start', 'b.start', 'layer', 'c.start', 'forward', 'c.response', 'b.response', 'a.response']);
  });
});
