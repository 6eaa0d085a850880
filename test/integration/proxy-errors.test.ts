/**
 * Failures Meshlet answers itself, on real sockets: each is a proxy-made response with the right
 * status, an `x-meshlet-error` header and a JSON body, and the sidecar keeps serving afterwards.
 * Malformed and ambiguous requests (request smuggling) are refused and never reach the upstream.
 */
import { connect, createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { rawExchange } from '../helpers/raw.ts';
import { eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

/** A port nothing listens on: bound once by us, then released. */
async function closedPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('proxy-made error responses', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function sidecarTo(endpoints: Array<{ address: string; port: number }>, extra: Record<string, unknown> = {}): Promise<Sidecar> {
    const sidecar = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'greeter', endpoints, ...extra }] });
    cleanup.push(() => sidecar.stop());
    return sidecar;
  }

  async function backend(): Promise<TestBackend> {
    const b = await startBackend('greeter');
    cleanup.push(() => b.close());
    return b;
  }

  async function expectMeshError(sidecar: Sidecar, status: number, reason: string, code: string): Promise<{ message: string }> {
    const res = await request(`${upstreamUrl(sidecar, 'greeter')}/hello`);
    expect(res.statusCode).toBe(status);
    expect(res.headers['x-meshlet-error']).toBe(reason);
    expect(res.headers['content-type']).toBe('application/json');
    const body = (await res.body.json()) as { error: string; code: string; message: string };
    expect(body).toMatchObject({ error: reason, code });
    return body;
  }

  /**
   * A client sends a request to an upstream that reads it and never answers, then leaves: only the
   * sidecar's abort can close the upstream connection. Resolves with the upstream connections seen
   * and the status observers got (0: the client left before any response).
   */
  async function clientLeavesMidRequest(upstreamExtra: Record<string, unknown>): Promise<{ upstreamConnections: number; statuses: number[] }> {
    const upstreamClosed: Promise<void>[] = [];
    const server = createServer((socket) => {
      socket.on('error', () => {});
      socket.resume();
      upstreamClosed.push(new Promise((resolve) => socket.once('close', () => resolve())));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => server.close(() => resolve())));
    const sidecar = await sidecarTo([{ address: '127.0.0.1', port: (server.address() as { port: number }).port }], upstreamExtra);
    const statuses: number[] = [];
    sidecar.observers.push({ onEnd: (_x, outcome) => statuses.push(outcome.status) });
    const port = Number(new URL(upstreamUrl(sidecar, 'greeter')).port);
    const socket = connect(port, '127.0.0.1');
    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await eventually('the upstream got the request', () => upstreamClosed.length === 1);
    socket.destroy();
    await upstreamClosed[0];
    await eventually('the exchange ended for observers', () => statuses.length === 1);
    return { upstreamConnections: upstreamClosed.length, statuses };
  }

  it('a client that leaves while the upstream has not answered yet cuts the upstream request too', async () => {
    const { statuses } = await clientLeavesMidRequest({ timeouts: { request: '60s' } });
    expect(statuses).toEqual([0]);
  });

  it('a client that leaves cuts the upstream request when a layer made the exchange signal too (per-try timeout)', async () => {
    // The per-try timeout races the exchange's AbortSignal (made on demand) with its own: the client's
    // abort must reach the upstream through that signal as through the pool's plain watch.
    const { statuses, upstreamConnections } = await clientLeavesMidRequest({ timeouts: { request: '60s' }, retries: { perTryTimeout: '30s' } });
    expect(statuses).toEqual([0]);
    expect(upstreamConnections).toBe(1); // cut, not retried
  });

  it('a client that leaves cuts the upstream request under a route timeout too (its deadline copy of the exchange)', async () => {
    const { statuses } = await clientLeavesMidRequest({ timeouts: { request: '60s' }, routes: [{ name: 'all', match: { prefix: '/' }, to: 'greeter', timeout: '30s' }] });
    expect(statuses).toEqual([0]);
  });

  it('503 no_endpoint when discovery knows the service but it has no endpoints', async () => {
    const sidecar = await sidecarTo([]);
    sidecar.registry.apply({ provider: 'test', services: new Map([['greeter', []]]) });
    const body = await expectMeshError(sidecar, 503, 'no_endpoint', 'MESH_ERR_NO_HEALTHY_ENDPOINT');
    expect(body.message).toContain('"greeter"');
  });

  it('503 discovery_unavailable when no provider ever reported the service', async () => {
    const sidecar = await sidecarTo([]);
    await expectMeshError(sidecar, 503, 'discovery_unavailable', 'MESH_ERR_DISCOVERY_UNAVAILABLE');
  });

  it('502 upstream_connect when the endpoint refuses the connection', async () => {
    const port = await closedPort();
    const sidecar = await sidecarTo([{ address: '127.0.0.1', port }]);
    const body = await expectMeshError(sidecar, 502, 'upstream_connect', 'MESH_ERR_UPSTREAM_CONNECT');
    expect(body.message).toContain(`greeter@127.0.0.1:${port}`);
  });

  it('502 upstream_reset when the endpoint resets the connection', async () => {
    const b = await backend();
    b.mode = { kind: 'reset' };
    const sidecar = await sidecarTo([{ address: '127.0.0.1', port: b.port }]);
    await expectMeshError(sidecar, 502, 'upstream_reset', 'MESH_ERR_UPSTREAM_RESET');
    // The sidecar is still healthy: the next request succeeds.
    b.mode = { kind: 'ok' };
    expect((await request(`${upstreamUrl(sidecar, 'greeter')}/again`)).statusCode).toBe(200);
  });

  it('504 upstream_timeout when response headers do not arrive in time', async () => {
    const b = await backend();
    b.mode = { kind: 'hang' };
    const sidecar = await sidecarTo([{ address: '127.0.0.1', port: b.port }], { timeouts: { request: '200ms' } });
    const body = await expectMeshError(sidecar, 504, 'upstream_timeout', 'MESH_ERR_UPSTREAM_TIMEOUT');
    expect(body.message).toContain('greeter');
  });

  it('cuts the client connection when the upstream dies mid-body (never a silently truncated 200)', async () => {
    const b = await startBackend('greeter', (req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '1000000' });
      res.write('x'.repeat(1000), () => res.socket?.resetAndDestroy());
    });
    cleanup.push(() => b.close());
    const sidecar = await sidecarTo([{ address: '127.0.0.1', port: b.port }]);
    const res = await request(`${upstreamUrl(sidecar, 'greeter')}/partial`);
    expect(res.statusCode).toBe(200);
    await expect(res.body.text()).rejects.toThrow();
    // The sidecar is fine and nothing stays counted as in flight.
    const cluster = sidecar.clusters.get('greeter')!;
    await eventually('no request counted as active', () => cluster.endpoints.every((e) => e.active === 0));
  });

  it('leaves the upstream answer alone: an app 503 has no x-meshlet-error', async () => {
    const b = await backend();
    b.mode = { kind: 'status', status: 503 };
    const sidecar = await sidecarTo([{ address: '127.0.0.1', port: b.port }]);
    const res = await request(`${upstreamUrl(sidecar, 'greeter')}/x`);
    expect(res.statusCode).toBe(503);
    expect(res.headers['x-meshlet-error']).toBeUndefined();
    expect(await res.body.json()).toEqual({ backend: 'greeter', status: 503 });
  });
});

describe('malformed and ambiguous requests', () => {
  let b: TestBackend;
  let sidecar: Sidecar;
  afterEach(async () => {
    await sidecar?.stop();
    await b?.close();
  });

  async function start(extra: Record<string, unknown> = {}, handler?: Parameters<typeof startBackend>[1]): Promise<number> {
    b = await startBackend('greeter', handler);
    sidecar = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: b.port }] }], ...extra });
    return sidecar.ports.upstreams.greeter!;
  }

  /** Sends `text` raw; expects a proxy-made `status` with `reason`, and the backend to have seen nothing. */
  async function expectRefused(port: number, text: string, status: number, reason: string): Promise<string> {
    const reply = await rawExchange(port, text);
    expect(reply).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
    expect(reply).toContain(`x-meshlet-error: ${reason}\r\n`);
    expect(reply).toContain('connection: close');
    expect(JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: reason });
    expect(b.hits).toBe(0);
    return reply;
  }

  it('400 for a malformed request line', async () => {
    const port = await start();
    await expectRefused(port, 'HELLO WORLD\r\n\r\n', 400, 'bad_request');
    await expectRefused(port, 'GET / HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n', 400, 'bad_request');
  });

  it('431 for a request head over limits.maxRequestHeadBytes', async () => {
    const port = await start({ limits: { maxRequestHeadBytes: 4096 } });
    await expectRefused(port, `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(5000)}\r\n\r\n`, 431, 'headers_too_large');
    // Just under the limit is fine.
    const ok = await rawExchange(port, `GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ${'a'.repeat(3000)}\r\n\r\n`);
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
  });

  it('408 for a client that does not finish its request head within limits.requestHeadTimeout (slowloris)', async () => {
    const port = await start({ limits: { requestHeadTimeout: '300ms' } });
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.setEncoding('latin1').on('data', (c: string) => (reply += c));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\nX-Drip: ');
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(reply).toContain('x-meshlet-error: request_timeout\r\n');
    expect(b.hits).toBe(0);
    expect(sidecar.config.limits.requestHeadTimeout).toBe(300);
  });

  it('400 for both Content-Length and Transfer-Encoding (CL.TE / TE.CL smuggling)', async () => {
    const port = await start();
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    await expectRefused(port, `POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`, 400, 'bad_request');
    await expectRefused(port, `POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n${smuggled}`, 400, 'bad_request');
  });

  it('400 for duplicate differing Content-Length and for an obfuscated Transfer-Encoding', async () => {
    const port = await start();
    await expectRefused(port, 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde', 400, 'bad_request');
    await expectRefused(port, 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n', 400, 'bad_request');
    await expectRefused(port, 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', 400, 'bad_request');
  });

  it('400 for a bad chunk size, and a smuggled request behind it never reaches the upstream', async () => {
    const port = await start();
    await expectRefused(port, 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'bad_request');
  });

  it('a bad chunk after the body started streaming aborts the upstream request and answers 400', async () => {
    let completed = 0;
    let aborted = 0;
    const port = await start({}, (req, res) => {
      req.resume();
      req.on('end', () => {
        completed++;
        res.end('{}');
      });
      req.on('aborted', () => aborted++);
    });
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.setEncoding('latin1').on('data', (c: string) => (reply += c));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    // A first chunk larger than any request buffering (retries keep small bodies to resend them).
    const first = 'a'.repeat(512 * 1024);
    socket.write(`POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${first.length.toString(16)}\r\n${first}\r\n`);
    await eventually('the upstream received the streamed request', () => b.hits === 1);
    socket.write('ZZ\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply).toContain('x-meshlet-error: bad_request');
    await eventually('the upstream request was aborted', () => aborted === 1);
    expect(completed).toBe(0);
    expect(b.hits).toBe(1);
  });

  it('a bad chunk in a small body (held for resending) answers 400; the exchange ends cleanly for observers', async () => {
    let completed = 0;
    const port = await start({}, (req, res) => {
      req.resume();
      req.on('end', () => {
        completed++;
        res.end('{}');
      });
    });
    const ended: number[] = [];
    sidecar.observers.push({ onEnd: (_x, outcome) => ended.push(outcome.status) });
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.setEncoding('latin1').on('data', (c: string) => (reply += c));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n');
    await eventually('the sidecar accepted the request', () => sidecar.listeners().some((l) => 'inFlight' in l.listener && l.listener.inFlight > 0));
    socket.write('ZZ\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n');
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    await eventually('the exchange ended for observers', () => ended.length === 1);
    expect(completed).toBe(0);
    expect(b.hits).toBeLessThanOrEqual(1);
    expect((await request(`${upstreamUrl(sidecar, 'greeter')}/after`)).statusCode).toBe(200);
  });

  it('survives a client that leaves mid-upload, and observers still see the exchange end', async () => {
    const port = await start();
    const ended: number[] = [];
    sidecar.observers.push({ onEnd: (_x, outcome) => ended.push(outcome.status) });
    const socket = connect(port, '127.0.0.1');
    socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial');
    await eventually('the sidecar accepted the request', () => sidecar.listeners().some((l) => 'inFlight' in l.listener && l.listener.inFlight > 0));
    socket.destroy();
    await eventually('the exchange ended for observers', () => ended.length === 1);
    expect(ended).toEqual([0]);
    // Still serving.
    expect((await request(`${upstreamUrl(sidecar, 'greeter')}/after`)).statusCode).toBe(200);
  });

  it('a throwing observer fails that exchange, not the process', async () => {
    const port = await start();
    let calls = 0;
    sidecar.observers.push({
      onStart: () => {
        if (++calls === 1) throw new Error('observer bug');
      },
    });
    const reply = await rawExchange(port, 'GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 5\d\d /);
    expect(reply).toContain('x-meshlet-error: ');
    expect((await request(`${upstreamUrl(sidecar, 'greeter')}/second`)).statusCode).toBe(200);
  });

  it('answers Expect: 100-continue itself and forwards the body (curl sends it for large bodies)', async () => {
    const port = await start();
    const reply = await rawExchange(port, 'POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nabc');
    expect(reply).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    expect(b.hits).toBe(1);
    expect(b.lastHeaders?.expect).toBeUndefined();
  });
});
