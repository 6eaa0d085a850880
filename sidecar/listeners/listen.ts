import type { Server } from 'node:net';

const HINTS: Record<string, string> = { EADDRINUSE: 'address already in use', EACCES: 'permission denied (ports below 1024 need privileges)', EADDRNOTAVAIL: 'no such local address' };

/** Binds a server and resolves with the bound port; rejects with a message naming the listener and address. */
export function listen(server: Server, port: number, address: string, what = 'listener'): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const hint = err.code && HINTS[err.code] ? ` (${HINTS[err.code]})` : '';
      reject(new Error(`cannot listen on ${address}:${port} for ${what}: ${err.code ?? err.message}${hint}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(port, address, () => {
      server.off('error', onError);
      const bound = server.address();
      resolve(typeof bound === 'object' && bound ? bound.port : port);
    });
  });
}

/** Polls `done` every 20 ms until it returns true or `timeoutMs` passes; resolves with whether it finished. */
export function waitUntil(done: () => boolean, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (done()) return resolve(true);
    const deadline = Date.now() + timeoutMs;
    const timer = setInterval(() => {
      if (done()) {
        clearInterval(timer);
        resolve(true);
      } else if (Date.now() >= deadline) {
        clearInterval(timer);
        resolve(false);
      }
    }, 20);
  });
}
