import { describe, expect, it } from 'vitest';
import { formatTapLine, readServerSentEvents } from '../../sidecar/admin/tap-cli.ts';
import { matchesTapFilter, parseTapFilter, type TapEvent } from '../../sidecar/admin/tap.ts';

const event: TapEvent = {
  time: '2026-11-25T02:26:43.427Z',
  direction: 'outbound',
  upstream: 'greeter',
  method: 'GET',
  path: '/hello',
  status: 503,
  endpoint: '127.0.0.1:15001',
  attempts: 2,
  durationMs: 5.84,
  error: 'upstream_reset',
  traceId: 'bfa5b11ff4cf0d73282d1ac646a0bb34',
};

describe('tap filters', () => {
  it.each([
    ['status=5xx', true],
    ['status=503', true],
    ['status=4xx', false],
    ['upstream=greeter', true],
    ['upstream=other', false],
    ['direction=outbound&method=get', true],
    ['direction=inbound', false],
    ['path=/hel', true],
    ['path=/bye', false],
  ])('%s matches: %s', (query, expected) => {
    expect(matchesTapFilter(event, parseTapFilter(new URLSearchParams(query)))).toBe(expected);
  });

  it('upstream=local and upstream=inbound both select calls into the app', () => {
    const inbound: TapEvent = { ...event, direction: 'inbound', upstream: 'local' };
    expect(matchesTapFilter(inbound, parseTapFilter(new URLSearchParams('upstream=local')))).toBe(true);
    expect(matchesTapFilter(inbound, parseTapFilter(new URLSearchParams('upstream=inbound')))).toBe(true);
  });

  it.each([
    ['status=5x', 'status: expected a status (503) or a class (5xx), got "5x"'],
    ['direction=up', 'direction: expected inbound or outbound, got "up"'],
    ['path=hello', 'path: expected a path prefix starting with /'],
    ['colour=red', 'unknown filter "colour"'],
  ])('refuses %s', (query, message) => {
    expect(() => parseTapFilter(new URLSearchParams(query))).toThrow(message);
  });
});

describe('meshlet tap output', () => {
  it('prints one line per request', () => {
    expect(formatTapLine(event)).toBe('02:26:43.427 out greeter GET /hello 503 5.8ms endpoint=127.0.0.1:15001 attempts=2 error=upstream_reset trace=bfa5b11ff4cf0d73282d1ac646a0bb34');
  });

  it('escapes control characters so a request cannot drive the terminal', () => {
    expect(formatTapLine({ ...event, path: '/\u001b[2Jx', error: undefined, traceId: undefined, attempts: 1 })).toContain('/\\x1b[2Jx 503');
  });

  it('splits Server-Sent Events across arbitrary chunk boundaries', async () => {
    async function* chunks() {
      yield 'event: hello\ndata: {"a"';
      yield ':1}\n\n: keepalive\n\nda';
      yield Buffer.from('ta: {"b":2}\n\nevent: dropped\ndata: {"dropped":3}\n\n');
    }
    const seen = [];
    for await (const e of readServerSentEvents(chunks())) seen.push(e);
    expect(seen).toEqual([
      { event: 'hello', data: '{"a":1}' },
      { event: 'message', data: '{"b":2}' },
      { event: 'dropped', data: '{"dropped":3}' },
    ]);
  });
});

describe('TapHub with nobody listening', () => {
  it('leaves exchanges untouched', async () => {
    const { TapHub } = await import('../../sidecar/admin/tap.ts');
    const local = {} as never;
    const hub = new TapHub({ localCluster: local, maxBufferedBytes: 1024, service: 'web' });
    const notes = new Map<string, unknown>();
    const x = { req: { socket: { remoteAddress: '127.0.0.1' }, headers: {} }, notes, path: '/', method: 'GET', cluster: {}, attempts: 1 } as never;
    hub.observer.onStart!(x);
    hub.observer.onEnd!(x, { status: 200, bytesIn: 0, bytesOut: 0, durationMs: 1 });
    expect(notes.size).toBe(0);
    expect(hub.subscribers).toBe(0);
  });
});
