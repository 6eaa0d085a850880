/**
 * Test backends on real loopback sockets that misbehave on command: answer normally, fail with a
 * status, reset the connection, hang, or answer slowly. Each counts the requests it saw.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type BackendMode =
  | { kind: 'ok' }
  | { kind: 'status'; status: number }
  | { kind: 'reset' }
  | { kind: 'hang' }
  | { kind: 'slow'; delayMs: number };

export interface TestBackend {
  readonly name: string;
  readonly port: number;
  /** Requests received (including ones that were reset or hung). */
  hits: number;
  mode: BackendMode;
  /** Headers of the last request, for assertions on forwarded headers. */
  lastHeaders: IncomingMessage['headers'] | undefined;
  close(): Promise<void>;
}

/** Starts an HTTP backend answering `{"backend": name, ...}`; `handler` overrides the default answer. */
export async function startBackend(name: string, handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestBackend> {
  const sockets = new Set<Socket>();
  const backend: TestBackend = {
    name,
    port: 0,
    hits: 0,
    mode: { kind: 'ok' },
    lastHeaders: undefined,
    close: () => closeServer(server, sockets),
  };
  const server: Server = createServer((req, res) => {
    backend.hits++;
    backend.lastHeaders = req.headers;
    const mode = backend.mode;
    if (mode.kind === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    if (mode.kind === 'hang') return;
    const answer = () => {
      if (mode.kind === 'status') {
        res.writeHead(mode.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ backend: name, status: mode.status }));
        return;
      }
      if (handler) return handler(req, res);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ backend: name, method: req.method, url: req.url }));
      });
    };
    if (mode.kind === 'slow') setTimeout(answer, mode.delayMs);
    else answer();
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (backend as { port: number }).port = (server.address() as { port: number }).port;
  return backend;
}

/** Closes a server and destroys its remaining sockets. */
export function closeServer(server: Server | import('node:net').Server, sockets?: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    for (const s of sockets ?? []) s.destroy();
    if ('closeAllConnections' in server) server.closeAllConnections();
  });
}
