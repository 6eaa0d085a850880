import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../sidecar/telemetry/logger.ts';

function capture(): { stream: Writable; lines: () => Array<Record<string, unknown>>; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { stream, text: () => text, lines: () => text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('process logger', () => {
  it('writes to stdout asynchronously, so logging never blocks the request path', () => {
    const log = createLogger('info');
    const stream = (log as unknown as Record<symbol, { sync?: boolean; fd?: number }>)[pino.symbols.streamSym]!;
    expect(stream.fd).toBe(1);
    expect(stream.sync).toBe(false);
  });

  it('writes JSON lines at the configured level', () => {
    const out = capture();
    const log = createLogger('warn', out.stream);
    log.info('hidden');
    log.warn({ upstream: 'greeter' }, 'shown');
    expect(out.lines()).toEqual([expect.objectContaining({ level: 40, name: 'meshlet', upstream: 'greeter', msg: 'shown' })]);
  });

  it('never writes tokens, keys, passwords, authorization or cookie headers', () => {
    const out = capture();
    const log = createLogger('info', out.stream);
    log.info({ token: 'T0KEN', consul: { token: 'C0NSUL' }, tls: { key: 'PRIV', privateKey: 'PRIV2' }, password: 'PW' }, 'config');
    log.info({ headers: { authorization: 'Bearer B34RER', cookie: 'sid=C00KIE', 'set-cookie': 'sid=S3T', 'proxy-authorization': 'Basic PR0XY', 'x-consul-token': 'XC' } }, 'request');
    for (const secret of ['T0KEN', 'C0NSUL', 'PRIV', 'PW', 'B34RER', 'C00KIE', 'S3T', 'PR0XY', '"XC"']) expect(out.text()).not.toContain(secret);
    expect(out.lines()[1]).toMatchObject({ headers: { authorization: '[redacted]', cookie: '[redacted]' } });
  });
});
