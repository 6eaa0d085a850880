import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { whenBodyCloses } from '../../sidecar/protocols/exchange.ts';
import { type BodySink, type BodySource, WireBody } from '../../sidecar/protocols/wire/response-body.ts';

class Source implements BodySource {
  abandoned: Error | null = null;
  pauseReading(): void {}
  resumeReading(): void {}
  abandon(err: Error): void {
    this.abandoned = err;
  }
}

class Sink extends EventEmitter implements BodySink {
  readonly chunks: Buffer[] = [];
  ended = false;
  write(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    return true;
  }
  end(): void {
    this.ended = true;
  }
}

describe('WireBody close callbacks (what the layers release attempts with)', () => {
  it('calls every callback once when the body ends, in order', async () => {
    const body = new WireBody(new Source());
    const seen: string[] = [];
    body.onClose(() => seen.push('first'));
    whenBodyCloses(body, () => seen.push('second'));
    const sink = new Sink();
    const piped = body.pipeTo(sink);
    body.push(Buffer.from('hello'));
    expect(seen).toEqual([]);
    body.complete(undefined);
    await piped;
    expect(sink.ended).toBe(true);
    expect(seen).toEqual(['first', 'second']);
    // Nothing fires twice, whatever happens to the body afterwards.
    body.destroy();
    body.fail(new Error('late'));
    expect(seen).toEqual(['first', 'second']);
  });

  it('calls them when the body is destroyed or the upstream fails mid-body', async () => {
    const destroyed = new WireBody(new Source());
    let closedOnDestroy = 0;
    destroyed.onClose(() => closedOnDestroy++);
    destroyed.destroy();
    expect(closedOnDestroy).toBe(1);

    const failing = new WireBody(new Source());
    let closedOnFailure = 0;
    failing.onClose(() => closedOnFailure++);
    const piped = failing.pipeTo(new Sink());
    failing.fail(new Error('upstream reset'));
    await expect(piped).rejects.toThrow('upstream reset');
    expect(closedOnFailure).toBe(1);
  });

  it('calls a callback added after the body closed right away', () => {
    const body = new WireBody(new Source());
    body.resume();
    body.complete(undefined);
    expect(body.destroyed).toBe(true);
    let called = 0;
    body.onClose(() => called++);
    expect(called).toBe(1);
  });

  it('falls back to the close event for stream bodies (HTTP/2)', () => {
    const stream = new PassThrough();
    let called = 0;
    whenBodyCloses(stream, () => called++);
    expect(called).toBe(0);
    stream.destroy();
    return new Promise<void>((resolve) => {
      stream.once('close', () => {
        expect(called).toBe(1);
        resolve();
      });
    });
  });
});
