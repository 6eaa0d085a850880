/**
 * WebSocket (HTTP/1.1 Upgrade) through two real sidecars, outbound -> inbound, plain and with mTLS:
 * echo both ways, routed by path, a refused upgrade relayed, proxy-made failures, tunnels surviving a
 * hot reload and counted by drain.
 */
import { once } from 'node:events';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { validateConfig } from '../../sidecar/config/load.ts';
import { diffConfig } from '../../sidecar/config/diff.ts';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend } from '../helpers/backend.ts';
import { createTestCa, type TestCa } from '../helpers/mesh-ca.ts';
import { eventually, startSidecar, type RawConfig } from '../helpers/sidecar.ts';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

interface EchoApp {
  readonly port: number;
  /** Request headers of the last upgrade the app accepted. */
  lastHeaders: Record<string, string | string[] | undefined> | undefined;
}

/** A WebSocket echo app (`echo:<msg>`); refuses upgrades whose path starts with /deny (401). */
async function echoApp(): Promise<EchoApp> {
  const server: Server = createServer((_req, res) => res.end('plain'));
  const app: EchoApp = { port: 0, lastHeaders: undefined };
  const wss = new WebSocketServer({ server, verifyClient: (info: { req: { url?: string } }) => !(info.req.url ?? '').startsWith('/deny') });
  wss.on('connection', (ws, req) => {
    app.lastHeaders = req.headers;
    ws.on('message', (data, binary) => ws.send(binary ? data : `echo:${String(data)}`, { binary }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  (app as { port: number }).port = (server.address() as { port: number }).port;
  cleanup.push(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return app;
}

async function sidecar(raw: RawConfig): Promise<Sidecar> {
  const s = await startSidecar(raw);
  cleanup.push(() => s.stop());
  return s;
}

/** Opens a WebSocket and resolves once open, or rejects with the HTTP answer that refused it. */
function open(url: string, headers?: Record<string, string>): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, headers ? { headers } : undefined);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => reject(Object.assign(new Error(`refused ${res.statusCode}`), { status: res.statusCode, meshletError: res.headers['x-meshlet-error'], body })));
    });
    ws.once('error', reject);
  });
}

async function roundTrip(ws: WebSocket, text: string): Promise<string> {
  const reply = once(ws, 'message');
  ws.send(text);
  const [data] = (await reply) as [Buffer];
  return String(data);
}

async function closeWs(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return;
  const closed = once(ws, 'close');
  ws.close();
  await closed;
}

function meshPair(security: RawConfig | undefined) {
  return async () => {
    const app = await echoApp();
    const plainBackend = await startBackend('plain');
    cleanup.push(() => plainBackend.close());
    const server = await sidecar({ service: { name: 'chat', port: app.port }, ...(security ? { security } : {}) });
    const client = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [
        { name: 'web', endpoints: [{ address: '127.0.0.1', port: plainBackend.port }], routes: [{ name: 'chat-ws', match: { prefix: '/chat' }, to: 'chat' }] },
        { name: 'chat', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }] },
      ],
      ...(security ? { security } : {}),
      proxy: { port: 0 },
    });
    return { app, server, client, plainBackend };
  };
}

describe('WebSocket through outbound -> inbound sidecars', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await createTestCa({ trustDomain: 'mesh.test' });
  });
  afterAll(async () => {
    await ca.cleanup();
  });

  for (const mode of ['plain', 'mTLS'] as const) {
    it(`echoes text and binary frames both ways, routed by path (${mode})`, async () => {
      const { app, server, client, plainBackend } = await meshPair(mode === 'mTLS' ? { mtls: true, ca: { dir: ca.dir } } : undefined)();
      const ws = await open(`ws://127.0.0.1:${client.ports.upstreams.web}/chat/room1`);
      expect(await roundTrip(ws, 'hello')).toBe('echo:hello');
      const binary = once(ws, 'message');
      ws.send(Buffer.from([0, 1, 2, 255]), { binary: true });
      expect([...((await binary)[0] as Buffer)]).toEqual([0, 1, 2, 255]);
      // A large frame crosses in pieces and comes back whole.
      const big = 'x'.repeat(256 * 1024);
      expect(await roundTrip(ws, big)).toBe(`echo:${big}`);
      expect(plainBackend.hits).toBe(0);
      expect(app.lastHeaders?.['x-forwarded-proto']).toBe('http');
      if (mode === 'mTLS') expect(String(app.lastHeaders?.forwarded)).toMatch(/proto=https/);
      const outbound = client.listeners().find((l) => l.name === 'outbound:web')!.listener as { upgraded: number };
      const inbound = server.listeners().find((l) => l.name === 'inbound')!.listener as { upgraded: number };
      expect(outbound.upgraded).toBe(1);
      expect(inbound.upgraded).toBe(1);
      await closeWs(ws);
      await eventually('tunnels closed', () => outbound.upgraded === 0 && inbound.upgraded === 0);
      // Through the host-routing proxy listener: Host names the upstream.
      const viaProxy = await open(`ws://127.0.0.1:${client.ports.proxy}/room2`, { host: 'chat' });
      expect(await roundTrip(viaProxy, 'proxied')).toBe('echo:proxied');
      await closeWs(viaProxy);
    });
  }

  it('relays an upgrade the app refuses (its own status, not proxy-made), and answers 503 when no endpoint is there', async () => {
    const { client } = await meshPair(undefined)();
    const refused = await open(`ws://127.0.0.1:${client.ports.upstreams.chat}/deny`).catch((err: { status: number; meshletError?: string }) => err);
    expect(refused).toMatchObject({ status: 401, meshletError: undefined });

    const lonely = await sidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'nobody' }] });
    const unavailable = await open(`ws://127.0.0.1:${lonely.ports.upstreams.nobody}/chat`).catch((err: { status: number; meshletError?: string }) => err);
    expect(unavailable).toMatchObject({ status: 503 });
    expect(['no_endpoint', 'discovery_unavailable']).toContain((unavailable as { meshletError: string }).meshletError);

    const dead = await sidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'dead', endpoints: [{ address: '127.0.0.1', port: 1 }] }] });
    const broken = await open(`ws://127.0.0.1:${dead.ports.upstreams.dead}/chat`).catch((err: { status: number; meshletError?: string }) => err);
    expect(broken).toMatchObject({ status: 502, meshletError: 'upstream_connect' });
  });

  it('serves an h2c upgrade, or an upgrade request with a body, as a plain HTTP/1.1 request', async () => {
    const { client, plainBackend } = await meshPair(undefined)();
    const ask = (headers: Record<string, string>, body?: string) =>
      new Promise<{ status: number; upgraded: boolean; text: string }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: client.ports.upstreams.web, method: body ? 'POST' : 'GET', path: '/plain', headers: { connection: 'upgrade', ...headers } });
        req.once('upgrade', (res, socket) => {
          socket.destroy();
          resolve({ status: res.statusCode!, upgraded: true, text: '' });
        });
        req.once('response', (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, upgraded: false, text }));
        });
        req.once('error', reject);
        req.end(body);
      });
    expect(await ask({ upgrade: 'h2c', 'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA' })).toMatchObject({ status: 200, upgraded: false });
    expect(plainBackend.lastHeaders?.upgrade).toBeUndefined();
    const posted = await ask({ upgrade: 'websocket' }, 'payload');
    expect(posted).toMatchObject({ status: 200, upgraded: false });
    expect(JSON.parse(posted.text)).toMatchObject({ backend: 'plain', method: 'POST' });
  });

  it('keeps a tunnel open across a hot reload of its upstream, and drain waits for it', async () => {
    const app = await echoApp();
    const raw = (request: string): RawConfig => ({
      service: { name: 'frontend', port: 1 },
      inbound: { address: '127.0.0.1', port: 0 },
      admin: { address: '127.0.0.1', port: 0 },
      shutdown: { drainTimeout: '10s' },
      logging: { level: 'silent', accessLog: false },
      upstreams: [{ name: 'chat', port: 0, timeouts: { request }, endpoints: [{ address: '127.0.0.1', port: app.port }] }],
    });
    const client = await startSidecar(raw('5s'));
    let stopped = false;
    cleanup.push(() => client.stop());
    const ws = await open(`ws://127.0.0.1:${client.ports.upstreams.chat}/`);
    expect(await roundTrip(ws, 'before')).toBe('echo:before');
    const next = validateConfig(raw('6s'), 'test');
    const diff = diffConfig(client.config, next);
    expect(diff.upstreams.changed).toEqual(['chat']);
    expect(await client.applyConfig(next, diff)).toEqual([]);
    expect(await roundTrip(ws, 'after')).toBe('echo:after');
    // A new tunnel after the reload works too.
    const second = await open(`ws://127.0.0.1:${client.ports.upstreams.chat}/`);
    expect(await roundTrip(second, 'new')).toBe('echo:new');
    await closeWs(second);

    const stopping = client.stop().then(() => (stopped = true));
    await eventually('draining', () => client.state === 'draining');
    const listener = client.listeners().find((l) => l.name === 'outbound:chat')!.listener as { upgraded: number; inFlight: number };
    await eventually('inbound drained, outbound waiting on the tunnel', () => listener.inFlight === 0);
    expect(await roundTrip(ws, 'draining')).toBe('echo:draining');
    expect(stopped).toBe(false);
    expect(listener.upgraded).toBe(1);
    await closeWs(ws);
    await stopping;
    expect(stopped).toBe(true);
  });
});
