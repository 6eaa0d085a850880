/** L4 upstreams: bytes piped unchanged both ways, half-close kept, connect failures handled. */
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { closeServer } from '../helpers/backend.ts';
import { eventually, startSidecar } from '../helpers/sidecar.ts';

/**
 * An echo server that replies only once the client has finished sending (half-close): it answers
 * `echo(<bytes>, <md5>)` and then ends its side. A proxy that closes both directions on the
 * client's FIN loses the reply.
 */
async function startEchoOnEnd(): Promise<{ server: Server; port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    connections++;
    const hash = createHash('md5');
    let bytes = 0;
    socket.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    socket.on('end', () => socket.end(`echo(${bytes}, ${hash.digest('hex')})`));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, connections: () => connections };
}

/** Connects, sends `payload`, half-closes, and resolves with the whole reply once the server ends. */
function sendAndHalfClose(port: number, payload: Buffer): Promise<{ reply: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let reply = '';
    socket.setEncoding('latin1');
    socket.on('data', (c: string) => (reply += c));
    socket.on('end', () => resolve({ reply, socket }));
    socket.on('error', reject);
    socket.end(payload);
  });
}

describe('TCP upstreams', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function tcpSidecar(endpoints: Array<{ address: string; port: number }>): Promise<Sidecar> {
    const sidecar = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'db', protocol: 'tcp', endpoints }] });
    cleanup.push(() => sidecar.stop());
    return sidecar;
  }

  it('echoes through the proxy and keeps the reply flowing after the client half-closes', async () => {
    const echo = await startEchoOnEnd();
    cleanup.push(() => closeServer(echo.server));
    const sidecar = await tcpSidecar([{ address: '127.0.0.1', port: echo.port }]);
    const { reply, socket } = await sendAndHalfClose(sidecar.ports.upstreams.db!, Buffer.from('hello mesh'));
    expect(reply).toBe(`echo(10, ${createHash('md5').update('hello mesh').digest('hex')})`);
    socket.destroy();
  });

  it('works end to end: tcp upstream -> tcp inbound of the peer sidecar -> app, half-close kept', async () => {
    const echo = await startEchoOnEnd();
    cleanup.push(() => closeServer(echo.server));
    const server = await startSidecar({ service: { name: 'db', port: echo.port }, inbound: { protocol: 'tcp' } });
    cleanup.push(() => server.stop());
    const client = await tcpSidecar([{ address: '127.0.0.1', port: server.ports.inbound }]);
    const { reply, socket } = await sendAndHalfClose(client.ports.upstreams.db!, Buffer.from('through two sidecars'));
    expect(reply).toBe(`echo(20, ${createHash('md5').update('through two sidecars').digest('hex')})`);
    socket.destroy();
  });

  it('carries 8 MiB byte for byte', async () => {
    const echo = await startEchoOnEnd();
    cleanup.push(() => closeServer(echo.server));
    const sidecar = await tcpSidecar([{ address: '127.0.0.1', port: echo.port }]);
    const payload = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i, i);
    const { reply, socket } = await sendAndHalfClose(sidecar.ports.upstreams.db!, payload);
    expect(reply).toBe(`echo(${payload.length}, ${createHash('md5').update(payload).digest('hex')})`);
    socket.destroy();
  });

  it('stops reading the upstream while the client does not read, then delivers every byte', async () => {
    const TOTAL = 64 * 1024 * 1024;
    let upstreamSocket: Socket | undefined;
    const flood = createServer((socket) => {
      upstreamSocket = socket;
      socket.on('error', () => {});
      socket.end(Buffer.alloc(TOTAL, 0x62));
    });
    await new Promise<void>((resolve) => flood.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => closeServer(flood));
    const sidecar = await tcpSidecar([{ address: '127.0.0.1', port: (flood.address() as { port: number }).port }]);
    const client = connect({ port: sidecar.ports.upstreams.db!, host: '127.0.0.1' });
    client.pause();
    await eventually('the upstream connection', () => upstreamSocket !== undefined);
    // The client reads nothing: the sidecar must stop reading too, so most bytes stay with the upstream
    // (a proxy without backpressure would have read all 64 MiB into its memory by now).
    await new Promise((resolve) => setTimeout(resolve, 500));
    const backlog = upstreamSocket!.writableLength;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(backlog).toBeGreaterThan(TOTAL / 2);
    expect(upstreamSocket!.writableLength).toBe(backlog);
    let received = 0;
    const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
    client.on('data', (c: Buffer) => (received += c.length));
    client.resume();
    await ended;
    expect(received).toBe(TOTAL);
    client.destroy();
  });

  it('tries another endpoint when the first refuses, and releases connections when done', async () => {
    const echo = await startEchoOnEnd();
    cleanup.push(() => closeServer(echo.server));
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const deadPort = (dead.address() as { port: number }).port;
    await closeServer(dead);
    const sidecar = await tcpSidecar([
      { address: '127.0.0.1', port: deadPort },
      { address: '127.0.0.1', port: echo.port },
    ]);
    for (let i = 0; i < 4; i++) {
      const { reply, socket } = await sendAndHalfClose(sidecar.ports.upstreams.db!, Buffer.from(`n${i}`));
      expect(reply).toMatch(/^echo\(2, /);
      socket.destroy();
    }
    expect(echo.connections()).toBe(4);
    const cluster = sidecar.clusters.get('db')!;
    await eventually('no connection counted as active', () => cluster.endpoints.every((s) => s.active === 0));
  });

  it('closes the upstream side too when a connection is cut at the end of the drain', async () => {
    let upstreamClosed = false;
    let upstreamConnected = false;
    const app = createServer((socket) => {
      upstreamConnected = true;
      socket.resume();
      socket.on('error', () => {});
      socket.once('close', () => (upstreamClosed = true));
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => closeServer(app));
    const sidecar = await startSidecar({
      service: { name: 'client', port: 1 },
      shutdown: { drainTimeout: '100ms' },
      upstreams: [{ name: 'db', protocol: 'tcp', endpoints: [{ address: '127.0.0.1', port: (app.address() as { port: number }).port }] }],
    });
    const client = connect(sidecar.ports.upstreams.db!, '127.0.0.1');
    client.on('error', () => {});
    client.write('open');
    await eventually('the upstream connection is open', () => upstreamConnected);
    await sidecar.stop();
    await eventually('the upstream connection was closed', () => upstreamClosed);
    client.destroy();
  });

  it('a bug while picking an endpoint costs that connection, not the process', async () => {
    const echo = await startEchoOnEnd();
    cleanup.push(() => closeServer(echo.server));
    const sidecar = await tcpSidecar([{ address: '127.0.0.1', port: echo.port }]);
    const cluster = sidecar.clusters.get('db')!;
    const pick = cluster.pick.bind(cluster);
    cluster.pick = () => {
      throw new Error('picker bug');
    };
    const broken = connect(sidecar.ports.upstreams.db!, '127.0.0.1');
    broken.on('error', () => {});
    await new Promise((resolve) => broken.once('close', resolve));
    cluster.pick = pick;
    const { reply, socket } = await sendAndHalfClose(sidecar.ports.upstreams.db!, Buffer.from('ok'));
    expect(reply).toMatch(/^echo\(2, /);
    socket.destroy();
  });

  it('closes the client connection when the upstream has no endpoint', async () => {
    const sidecar = await tcpSidecar([]);
    const socket = connect(sidecar.ports.upstreams.db!, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise((resolve) => socket.once('close', resolve));
    expect(socket.bytesRead).toBe(0);
  });
});
