/**
 * One direction of an L4 proxy: `src`'s bytes written to `dst`, `src` paused while `dst` has bytes
 * queued, and `src`'s end (a FIN) passed on as `dst.end()`, so a half-close travels. It replaces
 * `src.pipe(dst)`, which pauses the source whenever `write()` answers false: for any chunk above the
 * socket's 16 KiB high-water mark, even when the kernel took it whole. A 64 KiB read then paused and
 * resumed the source socket every time (docs/performance.md, "Large bodies").
 */
import type { Socket } from 'node:net';

export function forwardBytes(src: Socket, dst: Socket): void {
  let waiting = false;
  const resume = (): void => {
    waiting = false;
    if (!src.destroyed) src.resume();
  };
  src.on('data', (chunk: Buffer) => {
    if (dst.write(chunk) || waiting || dst.writableLength === 0 || dst.destroyed) return;
    waiting = true;
    src.pause();
    dst.once('drain', resume);
  });
  src.once('end', () => {
    if (!dst.destroyed) dst.end();
  });
}
