import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { pump } from '../../sidecar/protocols/pump.ts';

/** A writable that keeps what it got and asks for a pause after every `highWaterMark` bytes. */
function sink(highWaterMark = 4): Writable & { received: Buffer[] } {
  const received: Buffer[] = [];
  const w = new Writable({
    highWaterMark,
    write(chunk: Buffer, _enc, cb) {
      received.push(chunk);
      setImmediate(cb);
    },
  });
  return Object.assign(w, { received });
}

describe('pump (response body streaming)', () => {
  it('copies every chunk in order, with backpressure, and resolves after the destination finished', async () => {
    const chunks = Array.from({ length: 50 }, (_, i) => Buffer.from(`chunk-${i};`));
    const dst = sink();
    let paused = 0;
    const src = Readable.from(chunks, { objectMode: false });
    src.on('pause', () => paused++);
    await pump(src, dst);
    expect(dst.writableFinished).toBe(true);
    expect(Buffer.concat(dst.received).toString()).toBe(chunks.join(''));
    expect(paused).toBeGreaterThan(0);
  });

  it('ends the destination for an already-ended empty source', async () => {
    const src = new PassThrough();
    src.end();
    src.resume();
    await new Promise((r) => src.once('end', r));
    const dst = sink();
    await pump(src, dst);
    expect(dst.writableFinished).toBe(true);
  });

  it('rejects with the source error and destroys the destination', async () => {
    const src = new PassThrough();
    const dst = sink();
    const done = pump(src, dst);
    src.write('partial');
    src.destroy(Object.assign(new Error('upstream reset'), { code: 'ECONNRESET' }));
    await expect(done).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(dst.destroyed).toBe(true);
  });

  it('rejects with a premature close and destroys the source when the destination closes first', async () => {
    const src = new PassThrough();
    const dst = sink();
    const done = pump(src, dst);
    src.write('partial');
    dst.destroy();
    await expect(done).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(src.destroyed).toBe(true);
  });

  it('rejects when the source closes without ending', async () => {
    const src = new PassThrough();
    const dst = sink();
    const done = pump(src, dst);
    src.destroy();
    await expect(done).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(dst.destroyed).toBe(true);
  });

  it('leaves no listener of its own on either stream once it resolved', async () => {
    const src = Readable.from([Buffer.from('a'), Buffer.from('b')], { objectMode: false });
    const dst = sink();
    const before = ['data', 'end', 'error', 'close'].map((e) => src.listenerCount(e)).concat(['drain', 'finish', 'error', 'close'].map((e) => dst.listenerCount(e)));
    await pump(src, dst);
    const after = ['data', 'end', 'error', 'close'].map((e) => src.listenerCount(e)).concat(['drain', 'finish', 'error', 'close'].map((e) => dst.listenerCount(e)));
    expect(after).toEqual(before);
  });

  it('leaves nothing that leads back to it on either stream once settled, resolved or failed', async () => {
    // A finished node:http2 stream can outlive its request by a while (it survives scavenges until a
    // full GC): whatever the pump left on it would be kept as long, the other stream included.
    const reachable = (stream: object) =>
      Object.getOwnPropertySymbols(stream)
        .filter((symbol) => symbol.description?.startsWith('meshlet.'))
        .map((symbol) => (stream as Record<symbol, unknown>)[symbol])
        .filter((value) => value !== undefined);
    const src = Readable.from([Buffer.from('a')], { objectMode: false });
    const dst = sink();
    await pump(src, dst);
    expect(reachable(src)).toEqual([]);
    expect(reachable(dst)).toEqual([]);

    const broken = new PassThrough();
    const other = sink();
    const failing = pump(broken, other);
    broken.destroy(Object.assign(new Error('gone'), { code: 'ECONNRESET' }));
    await expect(failing).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(reachable(broken)).toEqual([]);
    expect(reachable(other)).toEqual([]);
  });

  it('a stream in the middle of two pumps (destination of one, source of the other) serves both, and its failure fails both', async () => {
    const first = new PassThrough();
    const middle = new PassThrough();
    const dst = sink();
    const into = pump(first, middle);
    const out = pump(middle, dst);
    first.end('through the middle');
    await Promise.all([into, out]);
    expect(Buffer.concat(dst.received).toString()).toBe('through the middle');

    const a = new PassThrough();
    const b = new PassThrough();
    const c = sink();
    const ab = pump(a, b);
    const bc = pump(b, c);
    a.write('partial');
    b.destroy(Object.assign(new Error('middle broke'), { code: 'EPIPE' }));
    await expect(ab).rejects.toMatchObject({ code: 'EPIPE' });
    await expect(bc).rejects.toMatchObject({ code: 'EPIPE' });
    expect(a.destroyed && c.destroyed).toBe(true);
  });
});
