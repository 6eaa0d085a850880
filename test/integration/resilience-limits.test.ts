/**
 * Limits on real sockets: the circuit breaker refusing over-limit requests while the admitted ones
 * still hang, the rate limit answering 429 with retry-after (per client key), and a listener's
 * connection limit queueing then refusing connections.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar } from '../helpers/sidecar.ts';
import { startUpstream, type UpstreamFixture } from '../helpers/upstream.ts';

describe('circuit breaker', () => {
  let fixture: UpstreamFixture | undefined;
  const aborts: AbortController[] = [];
  afterEach(async () => {
    for (const a of aborts.splice(0)) a.abort();
    await fixture?.close();
    fixture = undefined;
  });

  /** Starts a request that the hanging backend will hold; it is aborted after the test. */
  function hold(url: string): Promise<unknown> {
    const controller = new AbortController();
    aborts.push(controller);
    return request(url, { signal: controller.signal }).catch(() => undefined);
  }

  it('rejects requests over maxRequests with 503 circuit_open while the admitted ones are still in flight', async () => {
    fixture = await startUpstream(['slow'], { retries: { enabled: false }, circuitBreaker: { maxRequests: 2 } });
    const backend = fixture.backends[0]!;
    backend.mode = { kind: 'hang' };
    let settled = 0;
    for (let i = 0; i < 2; i++) void hold(`${fixture.url}/held`).then(() => settled++);
    await eventually('two requests reach the backend', () => backend.hits === 2);
    const res = await fixture.call('/over');
    expect(res.status).toBe(503);
    expect(res.headers['x-meshlet-error']).toBe('circuit_open');
    expect(backend.hits).toBe(2);
    expect(settled).toBe(0);
    expect(fixture.events.breakerRejected).toEqual([{ upstream: 'api', reason: 'circuit_open' }]);
  });

  it('queues over maxConnections up to maxPending, then answers 503 overflow; the queue drains when slots free', async () => {
    fixture = await startUpstream(['slow'], { retries: { enabled: false }, circuitBreaker: { maxConnections: 1, maxPending: 1 } });
    const backend = fixture.backends[0]!;
    backend.mode = { kind: 'slow', delayMs: 1500 };
    const first = fixture.call('/1');
    await eventually('the first request reaches the backend', () => backend.hits === 1);
    const queued = fixture.call('/2');
    await eventually('the second request is pending', async () => {
      const state = (await (await request(`${adminUrl(fixture!.sidecar)}/resilience`)).body.json()) as { upstreams: { api: { circuitBreaker: { pending: number } } } };
      return state.upstreams.api.circuitBreaker.pending === 1;
    });
    const over = await fixture.call('/3');
    expect(over.status).toBe(503);
    expect(over.headers['x-meshlet-error']).toBe('overflow');
    expect((await first).status).toBe(200);
    expect((await queued).status).toBe(200);
    expect(backend.hits).toBe(2);
  });
});

describe('rate limit', () => {
  let fixture: UpstreamFixture | undefined;
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  it('answers 429 with retry-after once the bucket is empty, without calling the upstream', async () => {
    fixture = await startUpstream(['api'], { rateLimit: { requestsPerSecond: 0.5, burst: 2 } });
    expect((await fixture.call()).status).toBe(200);
    expect((await fixture.call()).status).toBe(200);
    const limited = await fixture.call();
    expect(limited.status).toBe(429);
    expect(limited.headers['x-meshlet-error']).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(2);
    expect(fixture.backends[0]!.hits).toBe(2);
    expect(fixture.events.rateLimited).toEqual([{ scope: 'upstream:api', key: '' }]);
  });

  it('keeps one bucket per client key from a header', async () => {
    fixture = await startUpstream(['api'], { rateLimit: { requestsPerSecond: 0.1, burst: 1, key: 'header', header: 'x-client' } });
    expect((await fixture.call('/', { headers: { 'x-client': 'alice' } })).status).toBe(200);
    expect((await fixture.call('/', { headers: { 'x-client': 'alice' } })).status).toBe(429);
    expect((await fixture.call('/', { headers: { 'x-client': 'bob' } })).status).toBe(200);
    expect(fixture.events.rateLimited).toEqual([{ scope: 'upstream:api', key: 'alice' }]);
  });
});

describe('inbound rate limit', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  it('limits callers of the local app per source IP', async () => {
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const sidecar = await startSidecar({ service: { name: 'app', port: app.port }, inbound: { rateLimit: { requestsPerSecond: 0.1, burst: 1, key: 'source_ip' } } });
    cleanup.push(() => sidecar.stop());
    const url = `http://127.0.0.1:${sidecar.ports.inbound}/`;
    expect((await request(url)).statusCode).toBe(200);
    const limited = await request(url);
    expect(limited.statusCode).toBe(429);
    expect(limited.headers['retry-after']).toBe('10');
    await limited.body.dump();
    expect(app.hits).toBe(1);
  });
});

describe('listener connection limit', () => {
  let fixture: UpstreamFixture | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await fixture?.close();
    fixture = undefined;
  });

  /** Opens a connection and sends one request; resolves everything received once the server closes. */
  function openWithRequest(port: number): { socket: Socket; received: Promise<string> } {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    const received = new Promise<string>((resolve) => socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1'))));
    socket.on('error', () => {});
    socket.write('GET /q HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    return { socket, received };
  }

  it('serves maxConnections, queues acceptQueue more, and closes the rest at once', async () => {
    fixture = await startUpstream(['api'], { retries: { enabled: false }, connectionLimit: { maxConnections: 1, acceptQueue: 1 } });
    const backend = fixture.backends[0]!;
    backend.mode = { kind: 'hang' };
    const port = fixture.sidecar.ports.upstreams.api!;
    const served = openWithRequest(port);
    await eventually('the first connection is served', () => backend.hits === 1);
    const queued = openWithRequest(port);
    const server = fixture.sidecar.listeners().find((l) => l.name === 'outbound:api')!.listener.server;
    await eventually('the second connection is accepted and queued', () => new Promise<boolean>((resolve) => server.getConnections((_err, n) => resolve(n === 2))));
    const refused = openWithRequest(port);
    expect(await refused.received).toBe('');
    expect(fixture.events.rateLimited).toEqual([{ scope: 'listener:outbound:api', key: 'queue_full:127.0.0.1' }]);
    expect(backend.hits).toBe(1);
    backend.mode = { kind: 'ok' };
    served.socket.destroy();
    expect(await queued.received).toMatch(/^HTTP\/1\.1 200/);
    expect(backend.hits).toBe(2);
  });
});
