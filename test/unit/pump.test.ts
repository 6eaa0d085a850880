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
});
