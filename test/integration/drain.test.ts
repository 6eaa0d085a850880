/**
 * Graceful drain: requests in flight when shutdown starts all complete, new inbound connections are
 * refused, the sidecar stops once they are done, and the drain timeout bounds how long it waits.
 */
import { connect } from 'node:net';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

/** Resolves with the connect error code (e.g. ECONNREFUSED), or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('graceful drain', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  /** An app that holds every response until `release()`; client -> server sidecar -> app. */
  async function mesh(drainTimeout = '5s'): Promise<{ app: TestBackend; held: ServerResponse[]; release: () => void; client: Sidecar; server: Sidecar }> {
    const held: ServerResponse[] = [];
    let released = false;
    const app = await startBackend('app', (req, res) => {
      req.resume();
      if (released) res.end(`done ${req.url}`);
      else held.push(res);
    });
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'app', port: app.port }, shutdown: { drainTimeout } });
    cleanup.push(() => server.stop());
    const client = await startSidecar({ service: { name: 'caller', port: 1 }, upstreams: [{ name: 'app', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }] }] });
    cleanup.push(() => client.stop());
    const release = () => {
      released = true;
      for (const res of held.splice(0)) res.end(`done ${res.req.url}`);
    };
    return { app, held, release, client, server };
  }

  it('finishes every request in flight, refuses new inbound connections, then stops', async () => {
    const { app, held, release, client, server } = await mesh();
    const inFlight = Array.from({ length: 6 }, (_, i) =>
      request(`${upstreamUrl(client, 'app')}/r${i}`).then(async (res) => ({ status: res.statusCode, body: await res.body.text() })),
    );
    await eventually('all six requests reached the app', () => app.hits === 6 && held.length === 6);
    let stopped = false;
    const stopping = server.stop().then(() => (stopped = true));
    expect(server.state).toBe('draining');
    await eventually('new inbound connections are refused', async () => (await tryConnect(server.ports.inbound)) === 'ECONNREFUSED');
    expect(stopped).toBe(false);
    release();
    const results = await Promise.all(inFlight);
    expect(results).toEqual(Array.from({ length: 6 }, (_, i) => ({ status: 200, body: `done /r${i}` })));
    await stopping;
    expect(server.state).toBe('stopped');
    expect(app.hits).toBe(6);
  });

  it('tells keep-alive clients of requests in flight to close their connection', async () => {
    const { app, release, server } = await mesh();
    const socket = connect(server.ports.inbound, '127.0.0.1');
    let reply = '';
    socket.setEncoding('latin1').on('data', (c: string) => (reply += c));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    socket.write('GET /ka HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await eventually('request reached the app', () => app.hits === 1);
    const stopping = server.stop();
    release();
    await closed;
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(reply).toMatch(/\r\nconnection: close\r\n/i);
    expect(reply.endsWith('done /ka')).toBe(true);
    await stopping;
  });

  it('keeps outbound serving while inbound drains (the app may still call out)', async () => {
    const { app, release, client } = await mesh();
    const other = await startBackend('other');
    cleanup.push(() => other.close());
    // The client sidecar also fronts an app that is busy with an inbound request.
    const front = await startSidecar({
      service: { name: 'front', port: app.port },
      upstreams: [{ name: 'other', endpoints: [{ address: '127.0.0.1', port: other.port }] }],
    });
    cleanup.push(() => front.stop());
    const inbound = request(`http://127.0.0.1:${front.ports.inbound}/busy`).then(async (res) => res.statusCode);
    await eventually('inbound request held by the app', () => app.hits === 1);
    const stopping = front.stop();
    // During the drain the app's outbound call still goes through.
    const out = await request(`${upstreamUrl(front, 'other')}/call`);
    expect(out.statusCode).toBe(200);
    await out.body.dump();
    release();
    expect(await inbound).toBe(200);
    await stopping;
    expect(front.state).toBe('stopped');
    expect(client.state).toBe('serving');
  });

  it('with shutdown.outboundGrace, keeps taking new outbound requests for that long while inbound is refused', async () => {
    const other = await startBackend('other');
    cleanup.push(() => other.close());
    const outboundOnly = (grace: string) =>
      startSidecar({ service: { name: 'front', port: 1 }, shutdown: { drainTimeout: '5s', outboundGrace: grace }, upstreams: [{ name: 'other', endpoints: [{ address: '127.0.0.1', port: other.port }] }] });
    const graceful = await outboundOnly('400ms');
    cleanup.push(() => graceful.stop());
    const stopping = graceful.stop();
    await eventually('inbound refused', async () => (await tryConnect(graceful.ports.inbound)) === 'ECONNREFUSED');
    // A brand-new connection and request after SIGTERM still goes out.
    const late = await request(`${upstreamUrl(graceful, 'other')}/late`, { reset: true });
    expect(late.statusCode).toBe(200);
    await late.body.dump();
    await stopping;
    expect(await tryConnect(graceful.ports.upstreams.other!)).toBe('ECONNREFUSED');
    // Without it (the default), outbound closes as soon as nothing is in flight inbound.
    const prompt = await outboundOnly('0');
    cleanup.push(() => prompt.stop());
    await prompt.stop();
    expect(await tryConnect(prompt.ports.upstreams.other!)).toBe('ECONNREFUSED');
  });

  it('cuts requests still running when the drain timeout ends, and stops anyway', async () => {
    const { app, server } = await mesh('300ms');
    const hung = request(`http://127.0.0.1:${server.ports.inbound}/forever`).then(
      async (res) => `status ${res.statusCode}: ${await res.body.text()}`,
      (err: Error) => `error ${err.message}`,
    );
    await eventually('request reached the app', () => app.hits === 1);
    const started = Date.now();
    await server.stop();
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(server.state).toBe('stopped');
    expect(await hung).toMatch(/^error /);
  });
});
