import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile } from '../../sidecar/config/load.ts';
import { installConfigReload } from '../../sidecar/config/reloader.ts';
import { Sidecar as SidecarClass } from '../../sidecar/sidecar.ts';
import { createLogger, silentLogger } from '../../sidecar/telemetry/logger.ts';
import { Writable } from 'node:stream';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { loadGreeter, startGreeterServer, type GreeterServer } from '../../examples/grpc/server.ts';
import { startBackend } from '../helpers/backend.ts';
import { createTestCa } from '../helpers/mesh-ca.ts';
import { eventually, startSidecar, upstreamUrl, type RawConfig } from '../helpers/sidecar.ts';

const { Greeter } = loadGreeter();

interface Reply {
  message: string;
  instance: string;
}

type GreeterClient = grpc.Client & Record<string, (...args: never[]) => unknown>;

describe('gRPC and HTTP/2 through sidecars (real @grpc/grpc-js peers)', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function greeter(instance = 'greeter-1'): Promise<GreeterServer> {
    const server = await startGreeterServer(0, instance);
    cleanup.push(() => server.close());
    return server;
  }

  async function sidecar(raw: RawConfig): Promise<Sidecar> {
    const s = await startSidecar(raw);
    cleanup.push(() => s.stop());
    return s;
  }

  /** greeter app <- inbound sidecar (grpc) <- outbound sidecar (grpc upstream) <- client. */
  async function mesh(upstreamExtra: RawConfig = {}): Promise<{ client: GreeterClient; app: GreeterServer; inbound: Sidecar; outbound: Sidecar }> {
    const app = await greeter();
    const inbound = await sidecar({ service: { name: 'greeter', port: app.port }, inbound: { protocol: 'grpc' } });
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: inbound.ports.inbound }], ...upstreamExtra }],
    });
    return { client: grpcClient(outbound), app, inbound, outbound };
  }

  function grpcClient(outbound: Sidecar, upstream = 'greeter'): GreeterClient {
    const client = new Greeter(`127.0.0.1:${outbound.ports.upstreams[upstream]}`, grpc.credentials.createInsecure()) as unknown as GreeterClient;
    cleanup.push(() => client.close());
    return client;
  }

  function unary(client: GreeterClient, name: string, options: { metadata?: grpc.Metadata; deadlineMs?: number } = {}) {
    return new Promise<{ err: grpc.ServiceError | null; reply?: Reply; headers?: grpc.Metadata; status?: grpc.StatusObject }>((resolve) => {
      let headers: grpc.Metadata | undefined;
      let status: grpc.StatusObject | undefined;
      let result: { err: grpc.ServiceError | null; reply?: Reply } | undefined;
      const done = () => {
        if (result && status) resolve({ ...result, headers, status });
      };
      const callOptions: grpc.CallOptions = options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {};
      const call = (client.SayHello as unknown as (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Reply) => void) => grpc.ClientUnaryCall)(
        { name },
        options.metadata ?? new grpc.Metadata(),
        callOptions,
        (err, reply) => {
          result = { err, reply };
          done();
        },
      );
      call.on('metadata', (m: grpc.Metadata) => (headers = m));
      call.on('status', (s: grpc.StatusObject) => {
        status = s;
        done();
      });
    });
  }

  it('unary call: reply, request metadata echoed back in headers and trailers', async () => {
    const { client } = await mesh();
    const metadata = new grpc.Metadata();
    metadata.set('x-echo', 'ping');
    const { err, reply, headers, status } = await unary(client, 'Ada', { metadata });
    expect(err).toBeNull();
    expect(reply).toEqual({ message: 'Hello, Ada!', instance: 'greeter-1' });
    expect(headers?.get('x-echo')).toEqual(['ping']);
    expect(status?.code).toBe(grpc.status.OK);
    expect(status?.metadata.get('x-echo-trailer')).toEqual(['ping']);
  });

  it('server streaming: every message, then OK with trailers', async () => {
    const { client } = await mesh();
    const metadata = new grpc.Metadata();
    metadata.set('x-echo', 'stream');
    const call = (client.SayHellos as unknown as (r: unknown, m: grpc.Metadata) => grpc.ClientReadableStream<Reply>)({ name: 'Bo', count: 3 }, metadata);
    const messages: string[] = [];
    call.on('data', (r: Reply) => messages.push(r.message));
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    expect(messages).toEqual(['Hello #1, Bo!', 'Hello #2, Bo!', 'Hello #3, Bo!']);
    expect(status.code).toBe(grpc.status.OK);
    expect(status.metadata.get('x-echo-trailer')).toEqual(['stream']);
  });

  it('client streaming: the server sees every message the client streamed', async () => {
    const { client } = await mesh();
    const reply = await new Promise<Reply>((resolve, reject) => {
      const call = (client.GreetAll as unknown as (cb: (e: grpc.ServiceError | null, r?: Reply) => void) => grpc.ClientWritableStream<unknown>)((err, r) => (err ? reject(err) : resolve(r!)));
      for (const name of ['Ann', 'Ben', 'Cy']) call.write({ name });
      call.end();
    });
    expect(reply.message).toBe('Hello, Ann and Ben and Cy!');
  });

  it('bidirectional streaming: each reply arrives before the client sends the next message', async () => {
    const { client } = await mesh();
    const metadata = new grpc.Metadata();
    metadata.set('x-echo', 'chat');
    const call = (client.Chat as unknown as (m: grpc.Metadata) => grpc.ClientDuplexStream<unknown, Reply>)(metadata);
    const replies: string[] = [];
    const next = () => new Promise<string>((resolve) => call.once('data', (r: Reply) => resolve(r.message)));
    // Ping-pong: the second message is only written once the first reply came back through both sidecars.
    for (const name of ['one', 'two', 'three']) {
      const reply = next();
      call.write({ name });
      replies.push(await reply);
    }
    call.end();
    const status = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    expect(replies).toEqual(['Hello, one!', 'Hello, two!', 'Hello, three!']);
    expect(status.code).toBe(grpc.status.OK);
    expect(status.metadata.get('x-echo-trailer')).toEqual(['chat']);
  });

  it("an app's own error status (NOT_FOUND, trailers-only) passes through unchanged", async () => {
    const { client } = await mesh();
    const { err, status } = await unary(client, 'missing');
    expect(err?.code).toBe(grpc.status.NOT_FOUND);
    expect(err?.details).toBe('nobody is called "missing"');
    expect(status?.metadata.get('x-meshlet-error')).toEqual([]);
  });

  it('no endpoint: the client sees UNAVAILABLE with the meshlet message and x-meshlet-error', async () => {
    const outbound = await sidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'greeter', protocol: 'grpc' }] });
    const client = grpcClient(outbound);
    const { err, status } = await unary(client, 'Ada');
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(err?.details).toMatch(/no healthy endpoint for upstream "greeter"/);
    // No provider announced the service yet (discovery_unavailable) or none is left (no_endpoint): both UNAVAILABLE.
    expect(status?.metadata.get('x-meshlet-error')[0]).toMatch(/^(no_endpoint|discovery_unavailable)$/);
  });

  it('a refused connection to the only endpoint: UNAVAILABLE (upstream_connect)', async () => {
    const closed = await greeter();
    const port = closed.port;
    await closed.close();
    const outbound = await sidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'greeter', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port }] }] });
    const { err, status } = await unary(grpcClient(outbound), 'Ada');
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);
    expect(status?.metadata.get('x-meshlet-error')).toEqual(['upstream_connect']);
  });

  it('a gRPC client deadline ends the call DEADLINE_EXCEEDED', async () => {
    const { client } = await mesh();
    const { err } = await unary(client, 'slow', { deadlineMs: 300 });
    expect(err?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('grpc-timeout is the deadline: the proxy answers grpc-status 4 (upstream_timeout) without a client-side timer', async () => {
    const { outbound } = await mesh();
    const session = h2connect(upstreamUrl(outbound, 'greeter'));
    cleanup.push(() => void session.close());
    // A raw call with no client timer: only the proxy can end it before the slow handler answers (2 s).
    const stream = session.request({ ':method': 'POST', ':path': '/meshlet.examples.Greeter/SayHello', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '200m' });
    const name = Buffer.from('slow');
    const message = Buffer.concat([Buffer.from([0x0a, name.length]), name]);
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    stream.end(frame);
    const headers = await new Promise<Record<string, unknown>>((resolve) => stream.on('response', resolve));
    stream.resume();
    expect(headers[':status']).toBe(200);
    expect(headers['grpc-status']).toBe('4');
    expect(headers['x-meshlet-error']).toBe('upstream_timeout');
    expect(decodeURIComponent(String(headers['grpc-message']))).toMatch(/grpc-timeout/);
  });

  /** GET `path` on an HTTP/2 client session: the head's status and x-meshlet-error, the body, and whether the stream ended cleanly or was cut. */
  function h2Get(session: ClientHttp2Session, path: string): Promise<{ status: unknown; error: unknown; text: string; outcome: string }> {
    return new Promise((resolve) => {
      const stream = session.request({ ':path': path });
      stream.end();
      let head: Record<string, unknown> = {};
      let text = '';
      stream.on('response', (h) => (head = h));
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => (text += c));
      stream.on('end', () => resolve({ status: head[':status'], error: head['x-meshlet-error'], text, outcome: 'ended' }));
      stream.on('close', () => resolve({ status: head[':status'], error: head['x-meshlet-error'], text, outcome: `closed (code ${stream.rstCode})` }));
      stream.on('error', () => {});
    });
  }

  it('plain HTTP/2 (h2c, node:http2 client) through an http2 upstream to a node:http2 app', async () => {
    const app = (await import('node:http2')).createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        res.writeHead(201, { 'content-type': 'text/plain', 'x-app': 'h2' });
        res.end(`${req.method} ${req.url} ${req.httpVersion} ${body} via=${String(req.headers.via)}`);
      });
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => app.close(() => resolve())));
    const appPort = (app.address() as { port: number }).port;
    const outbound = await sidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'web', protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: appPort }] }] });
    const session = h2connect(upstreamUrl(outbound, 'web'));
    cleanup.push(() => void session.close());
    const stream = session.request({ ':method': 'POST', ':path': '/echo?x=1' });
    stream.end('payload');
    const [headers, text] = await new Promise<[Record<string, unknown>, string]>((resolve, reject) => {
      let h: Record<string, unknown> = {};
      let data = '';
      stream.on('response', (r) => (h = r));
      stream.setEncoding('utf8');
      stream.on('data', (c: string) => (data += c));
      stream.on('end', () => resolve([h, data]));
      stream.on('error', reject);
    });
    expect(headers[':status']).toBe(201);
    expect(headers['x-app']).toBe('h2');
    expect(headers.via).toBe('2 meshlet');
    expect(text).toBe('POST /echo?x=1 2.0 payload via=2 meshlet');
  });

  it('an upstream stream reset before its response head is a 502 upstream_reset; the next request on the session is served', async () => {
    const app = (await import('node:http2')).createServer((req, res) => {
      // RST_STREAM before any header for /reset; a normal answer for anything else.
      if (req.url === '/reset') req.stream.close(0x2 /* INTERNAL_ERROR */);
      else res.end('fine');
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => app.close(() => resolve())));
    const appPort = (app.address() as { port: number }).port;
    const outbound = await sidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'web', protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: appPort }], retries: { enabled: false } }] });
    const session = h2connect(upstreamUrl(outbound, 'web'));
    cleanup.push(() => void session.close());
    expect(await h2Get(session, '/reset')).toMatchObject({ status: 502, error: 'upstream_reset', outcome: 'ended' });
    expect(await h2Get(session, '/ok')).toEqual({ status: 200, error: undefined, text: 'fine', outcome: 'ended' });
    expect(await h2Get(session, '/reset')).toMatchObject({ status: 502, error: 'upstream_reset', outcome: 'ended' });
  });

  it('http2 upstream timeouts: no head in time is a 504 naming the endpoint, a stalled body is cut, and the endpoint is idle again after both', async () => {
    const app = (await import('node:http2')).createServer((req, res) => {
      // /silent never answers; /stall sends its head and one chunk, then nothing.
      if (req.url === '/stall') {
        res.writeHead(200);
        res.write('first');
      } else if (req.url !== '/silent') res.end('fine');
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => app.close(() => resolve())));
    const appPort = (app.address() as { port: number }).port;
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'web', protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: appPort }], retries: { enabled: false }, timeouts: { request: '300ms', idle: '300ms' } }],
    });
    // A session per request: the listener's own idle timeout (the same 300 ms) may close a client
    // session that saw no frame while its request waited.
    const ask = (path: string) => {
      const session = h2connect(upstreamUrl(outbound, 'web'));
      cleanup.push(() => void session.close());
      return h2Get(session, path);
    };
    const silent = await ask('/silent');
    expect(silent).toMatchObject({ status: 504, error: 'upstream_timeout', outcome: 'ended' });
    expect(silent.text).toContain(`web@127.0.0.1:${appPort} sent no response headers within 300 ms`);
    // The head went through; the stall past the idle timeout cuts the stream instead of ending it cleanly.
    const stalled = await ask('/stall');
    expect(stalled).toMatchObject({ status: 200, text: 'first' });
    expect(stalled.outcome).not.toBe('ended');
    expect(await ask('/ok')).toMatchObject({ status: 200, text: 'fine', outcome: 'ended' });
    await eventually('no request counted in flight on the endpoint', () => outbound.clusters.get('web')!.endpoints.every((e) => e.active === 0));
  });

  it('an HTTP/1.1 backend behind an http2 upstream is refused as a protocol mismatch, not a hang', async () => {
    const backend = await startBackend('h1');
    cleanup.push(() => backend.close());
    const outbound = await sidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'web', protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: backend.port }], retries: { enabled: false } }] });
    const session = h2connect(upstreamUrl(outbound, 'web'));
    cleanup.push(() => void session.close());
    const stream = session.request({ ':path': '/' });
    stream.end();
    const headers = await new Promise<Record<string, unknown>>((resolve) => stream.on('response', resolve));
    stream.resume();
    expect(headers[':status']).toBe(502);
    expect(headers['x-meshlet-error']).toMatch(/^upstream_/);
  });

  it('gRPC over mTLS between two sidecars (h2 by ALPN): unary and bidirectional calls', async () => {
    const ca = await createTestCa({ trustDomain: 'mesh.test' });
    cleanup.push(() => ca.cleanup());
    const security = { mtls: true, ca: { dir: ca.dir } };
    const app = await greeter('greeter-tls');
    const inbound = await sidecar({ service: { name: 'greeter', port: app.port }, inbound: { protocol: 'grpc' }, security });
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: inbound.ports.inbound }] }],
      security,
    });
    const client = grpcClient(outbound);
    const { err, reply } = await unary(client, 'Tess');
    expect(err).toBeNull();
    expect(reply).toEqual({ message: 'Hello, Tess!', instance: 'greeter-tls' });
    const call = (client.Chat as unknown as () => grpc.ClientDuplexStream<unknown, Reply>)();
    const first = new Promise<Reply>((resolve) => call.once('data', resolve));
    call.write({ name: 'secure' });
    expect((await first).message).toBe('Hello, secure!');
    call.end();
    expect((await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve))).code).toBe(grpc.status.OK);
    // The inbound speaks TLS only: a cleartext h2c client gets no HTTP/2 session.
    const plain = h2connect(`http://127.0.0.1:${inbound.ports.inbound}`);
    const failed = await new Promise<boolean>((resolve) => {
      plain.once('error', () => resolve(true));
      plain.once('close', () => resolve(true));
      plain.once('remoteSettings', () => resolve(false));
    });
    plain.destroy();
    expect(failed).toBe(true);
  });

  it('mTLS inbound refuses a caller the authorization policy denies with PERMISSION_DENIED', async () => {
    const ca = await createTestCa({ trustDomain: 'mesh.test' });
    cleanup.push(() => ca.cleanup());
    const security = { mtls: true, ca: { dir: ca.dir } };
    const app = await greeter();
    const inbound = await sidecar({
      service: { name: 'greeter', port: app.port },
      inbound: { protocol: 'grpc' },
      security: { ...security, authorization: { default: 'deny', rules: [] } },
    });
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: inbound.ports.inbound }] }],
      security,
    });
    const { err, status } = await unary(grpcClient(outbound), 'Eve');
    expect(err?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status?.metadata.get('x-meshlet-error')).toEqual(['unauthorized']);
  });

  it('grpc health check (grpc.health.v1) takes a NOT_SERVING endpoint out and brings it back', async () => {
    const a = await greeter('greeter-a');
    const b = await greeter('greeter-b');
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [
        {
          name: 'greeter',
          protocol: 'grpc',
          endpoints: [
            { address: '127.0.0.1', port: a.port },
            { address: '127.0.0.1', port: b.port },
          ],
          healthCheck: { type: 'grpc', interval: '50ms', timeout: '1s', healthyThreshold: 1, unhealthyThreshold: 1 },
        },
      ],
    });
    const cluster = outbound.clusters.get('greeter')!;
    const stateOf = (port: number) => cluster.endpoints.find((e) => e.endpoint.port === port)!;
    b.setServing('NOT_SERVING');
    await eventually('greeter-b marked unhealthy', () => !stateOf(b.port).healthy);
    expect(stateOf(a.port).healthy).toBe(true);
    const client = grpcClient(outbound);
    const instances = new Set<string>();
    for (let i = 0; i < 4; i++) instances.add((await unary(client, 'x')).reply!.instance);
    expect([...instances]).toEqual(['greeter-a']);
    b.setServing('SERVING');
    await eventually('greeter-b healthy again', () => stateOf(b.port).healthy);
  });

  it('a grpc health check on an http upstream is a config error naming the field', async () => {
    await expect(
      startSidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'web', endpoints: [{ address: '127.0.0.1', port: 1 }], healthCheck: { type: 'grpc' } }] }),
    ).rejects.toThrow(/upstreams\[0\]\.healthCheck\.type: grpc checks need an http2 or grpc upstream/);
    await expect(
      startSidecar({ service: { name: 'frontend', port: 1 }, upstreams: [{ name: 'g', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: 1 }], healthCheck: { path: '/health' } }] }),
    ).rejects.toThrow(/upstreams\[0\]\.healthCheck\.type: http checks speak HTTP\/1\.1/);
  });

  it('a refused endpoint is retried on another, streamed request bodies included (connect failures only)', async () => {
    const dead = await greeter('dead');
    const deadPort = dead.port;
    await dead.close();
    const live = await greeter('live');
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [
        {
          name: 'greeter',
          protocol: 'grpc',
          endpoints: [
            { address: '127.0.0.1', port: deadPort },
            { address: '127.0.0.1', port: live.port },
          ],
          outlierDetection: { enabled: false },
        },
      ],
    });
    const retries: string[] = [];
    outbound.events.on('retry', (e) => retries.push(e.reason));
    const client = grpcClient(outbound);
    // Round robin: at least one of two calls picks the refused endpoint first.
    for (let i = 0; i < 2; i++) {
      // Client streaming: the body is a live stream, never buffered, and still resent after a refused connect.
      const reply = await new Promise<Reply>((resolve, reject) => {
        const call = (client.GreetAll as unknown as (cb: (e: grpc.ServiceError | null, r?: Reply) => void) => grpc.ClientWritableStream<unknown>)((err, r) => (err ? reject(err) : resolve(r!)));
        call.write({ name: `n${i}` });
        call.end();
      });
      expect(reply).toEqual({ message: `Hello, n${i}!`, instance: 'live' });
    }
    expect(retries.length).toBeGreaterThan(0);
    expect(new Set(retries)).toEqual(new Set(['upstream_connect']));
  });

  it('a client cancelling a server stream cancels the upstream call too', async () => {
    const { client, outbound } = await mesh();
    const call = (client.SayHellos as unknown as (r: unknown) => grpc.ClientReadableStream<Reply>)({ name: 'long', count: 100000 });
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    call.on('error', () => {});
    call.cancel();
    const cluster = outbound.clusters.get('greeter')!;
    await eventually('no stream in flight to the upstream', () => cluster.endpoints.every((e) => e.active === 0));
  });

  it('an upstream reset after the response started ends the call with UNAVAILABLE trailers, not a bare reset', async () => {
    const http2 = await import('node:http2');
    const app = http2.createServer();
    app.on('stream', (stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' });
      stream.on('error', () => {});
      stream.write(Buffer.from([0, 0, 0, 0, 0]), () => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR));
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => app.close(() => resolve())));
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'broken', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: (app.address() as { port: number }).port }] }],
    });
    const session = h2connect(upstreamUrl(outbound, 'broken'));
    cleanup.push(() => void session.close());
    const stream = session.request({ ':method': 'POST', ':path': '/x.Y/Z', 'content-type': 'application/grpc', te: 'trailers' });
    stream.end(Buffer.from([0, 0, 0, 0, 0]));
    stream.resume();
    const trailers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      stream.on('trailers', resolve);
      stream.on('close', () => reject(new Error(`closed without trailers (code ${stream.rstCode})`)));
    });
    expect(trailers['grpc-status']).toBe('14');
    expect(trailers['x-meshlet-error']).toBe('upstream_reset');
  });

  it('hot reload: new calls go to the new endpoint while a bidirectional stream on the old one carries on', async () => {
    const a = await greeter('greeter-a');
    const b = await greeter('greeter-b');
    const dir = await mkdtemp(join(tmpdir(), 'meshlet-grpc-reload-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'meshlet.json');
    const raw = {
      service: { name: 'frontend', port: 1 },
      inbound: { address: '127.0.0.1', port: 0 },
      admin: { address: '127.0.0.1', port: 0 },
      logging: { level: 'silent', accessLog: false },
      upstreams: [{ name: 'greeter', port: 0, protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: a.port }], timeouts: { request: '5s' } }],
    };
    await writeFile(file, JSON.stringify(raw));
    const frontend = new SidecarClass(await loadConfigFile(file), { log: silentLogger() });
    const reloader = installConfigReload(frontend, file, 20);
    cleanup.push(() => frontend.stop());
    await frontend.start();
    reloader.stop();
    const client = grpcClient(frontend);
    const chat = (client.Chat as unknown as () => grpc.ClientDuplexStream<unknown, Reply>)();
    const say = (name: string) => {
      const reply = new Promise<Reply>((resolve) => chat.once('data', resolve));
      chat.write({ name });
      return reply;
    };
    expect(await say('before')).toEqual({ message: 'Hello, before!', instance: 'greeter-a' });

    raw.upstreams[0]!.endpoints = [{ address: '127.0.0.1', port: b.port }];
    raw.upstreams[0]!.timeouts = { request: '4s' };
    await writeFile(file, JSON.stringify(raw));
    expect(await reloader.reload('admin')).toMatchObject({ ok: true });

    expect((await unary(client, 'new')).reply?.instance).toBe('greeter-b');
    expect(await say('after')).toEqual({ message: 'Hello, after!', instance: 'greeter-a' });
    chat.end();
    expect((await new Promise<grpc.StatusObject>((resolve) => chat.on('status', resolve))).code).toBe(grpc.status.OK);
  });

  it('drain: a call in flight when the sidecar stops still completes; the listener then refuses new sessions', async () => {
    const http2 = await import('node:http2');
    let arrived!: () => void;
    const requestArrived = new Promise<void>((resolve) => (arrived = resolve));
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const app = http2.createServer((req, res) => {
      arrived();
      void released.then(() => res.end('late answer'));
    });
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => app.close(() => resolve())));
    const outbound = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'web', protocol: 'http2', endpoints: [{ address: '127.0.0.1', port: (app.address() as { port: number }).port }] }],
      shutdown: { drainTimeout: '5s' },
    });
    const url = upstreamUrl(outbound, 'web');
    const session = h2connect(url);
    session.on('error', () => {});
    cleanup.push(() => void session.destroy());
    const stream = session.request({ ':path': '/slow' });
    stream.end();
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (c: string) => (body += c));
    const ended = new Promise<void>((resolve) => stream.on('end', resolve));
    await requestArrived;
    const stopped = outbound.stop();
    // The outbound listener stops accepting (after the inbound drained) while the call is still in flight.
    const refused = () =>
      new Promise<boolean>((resolve) => {
        const other = h2connect(url);
        other.once('connect', () => {
          other.destroy();
          resolve(false);
        });
        other.once('error', () => resolve(true));
      });
    await eventually('outbound listener refuses new connections', refused);
    expect(stream.closed).toBe(false);
    release();
    await ended;
    await stopped;
    expect(body).toBe('late answer');
  });

  it('the access log line of a gRPC call carries its grpc-status (the app\'s, or Meshlet\'s)', async () => {
    let text = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        text += chunk.toString();
        done();
      },
    });
    const app = await greeter();
    const outbound = await startSidecar(
      {
        service: { name: 'frontend', port: 1 },
        logging: { level: 'info', accessLog: true },
        upstreams: [
          { name: 'greeter', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: app.port }] },
          { name: 'nowhere', protocol: 'grpc' },
        ],
      },
      { log: createLogger('info', sink) },
    );
    cleanup.push(() => outbound.stop());
    expect((await unary(grpcClient(outbound), 'ok')).err).toBeNull();
    expect((await unary(grpcClient(outbound), 'missing')).err?.code).toBe(grpc.status.NOT_FOUND);
    expect((await unary(grpcClient(outbound, 'nowhere'), 'x')).err?.code).toBe(grpc.status.UNAVAILABLE);
    const access = () =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.log === 'access');
    await eventually('three access lines', () => access().length === 3);
    expect(access().map((l) => [l.upstream, l.status, l.grpcStatus])).toEqual([
      ['greeter', 200, 0],
      ['greeter', 200, 5],
      ['nowhere', 200, 14],
    ]);
  });

  it('an mTLS http2 inbound also serves HTTP/1.1 peers (ALPN http/1.1) and forwards them over h2c', async () => {
    const ca = await createTestCa({ trustDomain: 'mesh.test' });
    cleanup.push(() => ca.cleanup());
    const security = { mtls: true, ca: { dir: ca.dir } };
    const app = (await import('node:http2')).createServer((req, res) => res.end(`app saw HTTP/${req.httpVersion} ${req.url}`));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => app.close(() => resolve())));
    const inbound = await sidecar({ service: { name: 'web', port: (app.address() as { port: number }).port }, inbound: { protocol: 'http2' }, security });
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'web', protocol: 'http', endpoints: [{ address: '127.0.0.1', port: inbound.ports.inbound }] }],
      security,
    });
    const res = await fetch(`${upstreamUrl(outbound, 'web')}/h1`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('app saw HTTP/2.0 /h1');
  });

  it('HTTP/1.1 or a protocol error (DATA on stream 0) on a cleartext gRPC listener closes that connection and nothing else', async () => {
    const { client, outbound } = await mesh();
    const { connect } = await import('node:net');
    for (const junk of ['GET / HTTP/1.1\r\nhost: x\r\n\r\n', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00']) {
      const socket = connect(outbound.ports.upstreams.greeter!, '127.0.0.1');
      socket.on('error', () => {});
      socket.resume();
      socket.write(junk, 'latin1');
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    }
    expect((await unary(client, 'still')).reply?.message).toBe('Hello, still!');
  });
});
