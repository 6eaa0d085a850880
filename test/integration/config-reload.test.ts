/**
 * Hot reload of the main config file on real sockets: edits are saved atomically (write + rename, as
 * editors and ConfigMap updates do) and picked up by the directory watch; connections and requests
 * under way survive a reload that changes their upstream; bad or restart-only edits are refused with
 * the old config still serving.
 */
import { once } from 'node:events';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { Agent, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../examples/demo.ts';
import { loadConfigFile } from '../../sidecar/config/load.ts';
import { installConfigReload, type ConfigReloader } from '../../sidecar/config/reloader.ts';
import { Sidecar } from '../../sidecar/sidecar.ts';
import { createLogger, silentLogger } from '../../sidecar/telemetry/logger.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { startCliSidecar, stopCli, type CliProcess } from '../helpers/cli.ts';
import { createTestCa, type TestCa } from '../helpers/mesh-ca.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

type Raw = Record<string, any>;

/** Saves `raw` as JSON the way editors do: a temp file renamed over the config. */
async function save(file: string, raw: Raw | string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, typeof raw === 'string' ? raw : JSON.stringify(raw, null, 2));
  await rename(tmp, file);
}

interface Reply {
  status: number;
  body: string;
  localPort: number;
}

/** GET through `agent` (keep-alive when the agent is), with the client socket's local port. */
function get(url: string, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent }, (res) => {
      const localPort = res.socket.localPort!;
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, localPort }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Resolves with whether a TCP connect to the port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('hot reload of the config file', () => {
  let dir: string;
  let file: string;
  let a: TestBackend;
  let b: TestBackend;
  let sidecar: Sidecar;
  let reloader: ConfigReloader;
  let raw: Raw;
  const events: Array<{ source: string; ok: boolean; error?: string }> = [];
  /** Gates held by the backend's /held and /stream handlers, released by the test. */
  const gates: Array<() => void> = [];
  /** Requests the backend saw, by path (health probes included). */
  const seen: Record<string, number> = {};
  /** Client ports of the sidecar's connections to the backend (one per pooled connection). */
  const upstreamPorts = new Set<number>();
  /** The sidecar's log lines (JSON), at warn and above. */
  const logLines: string[] = [];

  /** Saves the config and waits for the reload it triggers (through the directory watch). */
  async function edit(change: (raw: Raw) => void): Promise<{ ok: boolean; error?: string }> {
    const next = structuredClone(raw);
    change(next);
    const seen = events.length;
    await save(file, next);
    await eventually('a configReload event', () => events.length > seen);
    const event = events[events.length - 1]!;
    if (event.ok) raw = next;
    return event;
  }

  beforeEach(async () => {
    a = await startBackend('a', (req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      seen[req.url!] = (seen[req.url!] ?? 0) + 1;
      upstreamPorts.add(req.socket.remotePort!);
      if (req.url === '/bad') {
        res.writeHead(503).end();
      } else if (req.url === '/held') {
        // Response head withheld until the test releases it.
        gates.push(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('held done'));
      } else if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first;');
        gates.push(() => res.end('last'));
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ backend: 'a', url: req.url }));
      }
    });
    b = await startBackend('b');
    dir = await mkdtemp(join(tmpdir(), 'meshlet-reload-'));
    file = join(dir, 'meshlet.json');
    raw = {
      service: { name: 'web', port: a.port },
      inbound: { address: '127.0.0.1', port: 0 },
      admin: { address: '127.0.0.1', port: 0 },
      shutdown: { drainTimeout: '2s' },
      logging: { level: 'warn', accessLog: false },
      upstreams: [{ name: 'api', port: 0, endpoints: [{ address: '127.0.0.1', port: a.port }], retries: { enabled: false } }],
    };
    await save(file, raw);
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        callback();
      },
    });
    sidecar = new Sidecar(await loadConfigFile(file), { log: createLogger('warn', destination) });
    sidecar.events.on('configReload', (e) => events.push(e));
    reloader = installConfigReload(sidecar, file, 20);
    await sidecar.start();
  });

  afterEach(async () => {
    for (const release of gates.splice(0)) release();
    events.length = 0;
    for (const key of Object.keys(seen)) delete seen[key];
    upstreamPorts.clear();
    logLines.length = 0;
    await sidecar.stop();
    await Promise.all([a.close(), b.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a keep-alive connection, a held request and a slow stream through a reload of their upstream', async () => {
    const api = upstreamUrl(sidecar, 'api');
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await get(`${api}/one`, keepAlive);
    expect(first.status).toBe(200);

    // A request whose response head is still to come, and a response streaming its body.
    const held = get(`${api}/held`);
    const streaming = new Promise<IncomingMessage>((resolve, reject) => httpRequest(`${api}/stream`, resolve).on('error', reject).end());
    const stream = await streaming;
    stream.setEncoding('utf8');
    let streamed = '';
    stream.on('data', (c: string) => (streamed += c));
    await eventually('first chunk of the stream', () => streamed === 'first;');
    await eventually('the held request reached the backend', () => gates.length === 2);

    const result = await edit((next) => {
      next.upstreams[0].balancer = 'least_request';
      next.upstreams[0].timeouts = { request: '300ms' };
    });
    expect(result).toEqual({ source: 'config:watch', ok: true });
    expect(sidecar.config.upstreams[0]!.timeouts.request).toBe(300);

    // The new handler serves new requests with the new timeout...
    const timedOut = await get(`${api}/held`);
    expect(timedOut.status).toBe(504);
    // ...on the same keep-alive client connection, which is still open.
    const again = await get(`${api}/two`, keepAlive);
    expect(again).toMatchObject({ status: 200, localPort: first.localPort });

    // The old handler finishes what it started, with its own (15 s) timeout.
    for (const release of gates.splice(0)) release();
    await once(stream, 'end');
    expect(streamed).toBe('first;last');
    expect(await held).toMatchObject({ status: 200, body: 'held done' });
    keepAlive.destroy();
  });

  it('keeps pooled upstream connections when the pool settings did not change, reopens them when they did', async () => {
    const api = upstreamUrl(sidecar, 'api');
    expect((await get(`${api}/p1`)).status).toBe(200);
    expect(await edit((next) => (next.upstreams[0].timeouts = { request: '5s' }))).toMatchObject({ ok: true });
    expect((await get(`${api}/p2`)).status).toBe(200);
    expect(upstreamPorts.size).toBe(1);
    expect(await edit((next) => (next.upstreams[0].timeouts = { request: '5s', poolIdle: '10s' }))).toMatchObject({ ok: true });
    expect((await get(`${api}/p3`)).status).toBe(200);
    expect(upstreamPorts.size).toBe(2);
  });

  it('restarts the health checks of a changed upstream with its new settings, the old checker stopped', async () => {
    const endpoint = () => sidecar.clusters.get('api')!.endpoints[0]!;
    const check = { interval: '30ms', unhealthyThreshold: 1, healthyThreshold: 1 };
    expect(await edit((next) => (next.upstreams[0].healthCheck = { ...check, path: '/bad' }))).toMatchObject({ ok: true });
    await eventually('the endpoint marked unhealthy by /bad', () => !endpoint().healthy);

    expect(await edit((next) => (next.upstreams[0].healthCheck = { ...check, path: '/good' }))).toMatchObject({ ok: true });
    await eventually('the endpoint healthy again by /good', () => endpoint().healthy);
    const bad = seen['/bad'];
    const good = seen['/good']!;
    await eventually('three more /good probes', () => seen['/good']! >= good + 3);
    expect(seen['/bad']).toBe(bad);
  });

  it('swaps the inbound handler: new inbound requests get the new timeout, one under way keeps its own', async () => {
    const inbound = `http://127.0.0.1:${sidecar.ports.inbound}`;
    const held = get(`${inbound}/held`);
    await eventually('the held request reached the app', () => gates.length === 1);
    expect(await edit((next) => (next.inbound.timeouts = { request: '300ms' }))).toMatchObject({ ok: true });
    expect((await get(`${inbound}/held`)).status).toBe(504);
    gates.shift()!();
    expect(await held).toMatchObject({ status: 200, body: 'held done' });
  });

  it('applies an inbound rate limit added by a reload', async () => {
    const inbound = `http://127.0.0.1:${sidecar.ports.inbound}`;
    expect(await edit((next) => (next.inbound.rateLimit = { requestsPerSecond: 0.001, burst: 1 }))).toMatchObject({ ok: true });
    expect((await get(`${inbound}/first`)).status).toBe(200);
    expect((await get(`${inbound}/second`)).status).toBe(429);
  });

  it('keeps a TCP pipe open through a reload of its upstream', async () => {
    const echo = createNetServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const echoPort = (echo.address() as { port: number }).port;
    try {
      expect(await edit((next) => next.upstreams.push({ name: 'pipe', port: 0, protocol: 'tcp', endpoints: [{ address: '127.0.0.1', port: echoPort }] }))).toMatchObject({ ok: true });
      const socket = connect(sidecar.ports.upstreams.pipe!, '127.0.0.1');
      socket.setEncoding('utf8');
      let received = '';
      socket.on('data', (c: string) => (received += c));
      socket.write('one;');
      await eventually('the first echo', () => received === 'one;');
      expect(await edit((next) => (next.upstreams[1].timeouts = { idle: '30s', connect: '500ms' }))).toMatchObject({ ok: true });
      socket.write('two;');
      await eventually('the second echo on the same pipe', () => received === 'one;two;');
      expect(socket.destroyed).toBe(false);
      socket.destroy();
    } finally {
      echo.close();
    }
  });

  it('rebinds the same port when the connection limit changes', async () => {
    const port = await freePort();
    expect(await edit((next) => (next.upstreams[0].port = port))).toMatchObject({ ok: true });
    expect(await edit((next) => (next.upstreams[0].connectionLimit = { maxConnections: 10 }))).toMatchObject({ ok: true });
    expect(sidecar.ports.upstreams.api).toBe(port);
    expect((await get(`http://127.0.0.1:${port}/after`)).status).toBe(200);
    expect(sidecar.listeners().filter((l) => l.name === 'outbound:api')).toHaveLength(1);
  });

  it('reports a freed port taken before it could be bound, and binds it on the next reload', async () => {
    // The blocker holds 127.0.0.2:port; api may take 127.0.0.1:port, but a wildcard bind of that port fails.
    const port = await freePort();
    const blocker = createNetServer();
    await new Promise<void>((resolve) => blocker.listen(port, '127.0.0.2', resolve));
    try {
      expect(await edit((next) => (next.upstreams[0].port = port))).toMatchObject({ ok: true });
      const result = await edit((next) => {
        next.upstreams[0].name = 'moved';
        next.upstreams[0].address = '0.0.0.0';
      });
      expect(result.ok).toBe(false);
      expect(result.error).toMatch(/^upstreams\[0\]\.port: cannot listen on 0\.0\.0\.0:\d+ .*EADDRINUSE/);
      expect(sidecar.ports.upstreams.moved).toBeUndefined();
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    const retried = await fetch(`${adminUrl(sidecar)}/reload`, { method: 'POST' });
    expect(await retried.json()).toMatchObject({ ok: true, changed: ['upstreams.moved (listener not bound: binding again)'] });
    expect(sidecar.ports.upstreams.moved).toBe(port);
    expect((await get(`http://127.0.0.1:${port}/back`)).status).toBe(200);
  });

  it('starts an upstream added to the file, stops one removed, and shows the effective config', async () => {
    expect(
      await edit((next) => {
        next.upstreams.push({ name: 'extra', port: 0, endpoints: [{ address: '127.0.0.1', port: b.port }] });
      }),
    ).toMatchObject({ ok: true });
    const port = sidecar.ports.upstreams.extra!;
    expect(port).toBeGreaterThan(0);
    expect(JSON.parse((await get(`${upstreamUrl(sidecar, 'extra')}/x`)).body)).toMatchObject({ backend: 'b' });
    const config = JSON.parse((await get(`${adminUrl(sidecar)}/config`)).body) as { upstreams: Array<{ name: string }> };
    expect(config.upstreams.map((u) => u.name)).toEqual(['api', 'extra']);

    expect(await edit((next) => next.upstreams.pop())).toMatchObject({ ok: true });
    expect(sidecar.ports.upstreams.extra).toBeUndefined();
    expect(await accepts(port)).toBe(false);
    expect((await get(`${upstreamUrl(sidecar, 'api')}/y`)).status).toBe(200);
  });

  it('drains a removed upstream: a request under way finishes, new connections are refused', async () => {
    expect(await edit((next) => next.upstreams.push({ name: 'extra', port: 0, endpoints: [{ address: '127.0.0.1', port: a.port }] }))).toMatchObject({ ok: true });
    const port = sidecar.ports.upstreams.extra!;
    const held = get(`http://127.0.0.1:${port}/held`);
    await eventually('the held request reached the backend', () => gates.length === 1);
    expect(await edit((next) => next.upstreams.pop())).toMatchObject({ ok: true });
    expect(await accepts(port)).toBe(false);
    gates.shift()!();
    expect(await held).toMatchObject({ status: 200, body: 'held done' });
  });

  it('switches the balancer of a changed upstream', async () => {
    const backends = async () => {
      const names = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const res = await new Promise<string>((resolve, reject) =>
          httpRequest(`${upstreamUrl(sidecar, 'api')}/who`, { headers: { 'x-user': 'alice' } }, (r) => {
            let body = '';
            r.setEncoding('utf8').on('data', (c: string) => (body += c));
            r.on('end', () => resolve(body));
          })
            .on('error', reject)
            .end(),
        );
        names.add((JSON.parse(res) as { backend: string }).backend);
      }
      return names;
    };
    expect(await edit((next) => next.upstreams[0].endpoints.push({ address: '127.0.0.1', port: b.port }))).toMatchObject({ ok: true });
    expect(await backends()).toEqual(new Set(['a', 'b']));
    expect(
      await edit((next) => {
        next.upstreams[0].balancer = 'ring_hash';
        next.upstreams[0].hashPolicy = { source: 'header', name: 'x-user' };
      }),
    ).toMatchObject({ ok: true });
    expect((await backends()).size).toBe(1);
  });

  it('sends static endpoint changes through the registry and applies a new log level', async () => {
    expect(await edit((next) => (next.upstreams[0].endpoints = [{ address: '127.0.0.1', port: b.port }]))).toMatchObject({ ok: true });
    expect(JSON.parse((await get(`${upstreamUrl(sidecar, 'api')}/where`)).body)).toMatchObject({ backend: 'b' });
    expect(sidecar.log.level).toBe('warn');
    expect(await edit((next) => (next.logging.level = 'debug'))).toMatchObject({ ok: true });
    expect(sidecar.log.level).toBe('debug');
  });

  it('moves an upstream to a new port: the old one stops accepting, the new one serves', async () => {
    const before = sidecar.ports.upstreams.api!;
    const free = await freePort();
    expect(await edit((next) => (next.upstreams[0].port = free))).toMatchObject({ ok: true });
    expect(sidecar.ports.upstreams.api).toBe(free);
    expect((await get(`http://127.0.0.1:${free}/z`)).status).toBe(200);
    expect(await accepts(before)).toBe(false);
  });

  it('refuses a bad edit with the field and file named, and keeps serving the old config', async () => {
    const result = await edit((next) => (next.upstreams[0].timeouts = { request: 'soon' }));
    expect(result.ok).toBe(false);
    expect(result.error).toContain('upstreams[0].timeouts.request');
    expect(result.error).toContain('meshlet.json');
    const errors = logLines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level >= 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(/^config reload refused, the old config stays in force: upstreams\[0\]\.timeouts\.request: .*\(meshlet\.json\)/);
    expect((await get(`${upstreamUrl(sidecar, 'api')}/still`)).status).toBe(200);
    expect(sidecar.config.upstreams[0]!.timeouts.request).toBe(15_000);
  });

  it('refuses a change that needs a restart, naming the field', async () => {
    const result = await edit((next) => {
      next.service.name = 'renamed';
      next.upstreams[0].timeouts = { request: '1s' };
    });
    expect(result).toMatchObject({ ok: false, error: 'service.name cannot change without a restart (meshlet.json)' });
    // Nothing of the refused file applies, not even the reloadable part.
    expect(sidecar.config.service.name).toBe('web');
    expect(sidecar.config.upstreams[0]!.timeouts.request).toBe(15_000);
  });

  it('answers POST /reload with 400 and the problems on a bad file, 200 and the changes on a good one', async () => {
    reloader.stop(); // only the admin call reloads here
    await save(file, '{ "service": ');
    const bad = await fetch(`${adminUrl(sidecar)}/reload`, { method: 'POST' });
    expect(bad.status).toBe(400);
    const badBody = (await bad.json()) as { ok: boolean; problems: string[] };
    expect(badBody.ok).toBe(false);
    expect(badBody.problems[0]).toMatch(/meshlet\.json: not valid JSON/);
    expect(events.at(-1)).toMatchObject({ source: 'config:admin', ok: false });

    raw.upstreams[0].balancer = 'random';
    await save(file, raw);
    const good = await fetch(`${adminUrl(sidecar)}/reload`, { method: 'POST' });
    expect(good.status).toBe(200);
    expect(await good.json()).toMatchObject({ ok: true, changed: ['upstreams[0].balancer'] });
    expect(sidecar.config.upstreams[0]!.balancer).toBe('random');
  });
});

describe('SIGHUP on the meshlet CLI', () => {
  let dir: string;
  let proc: (CliProcess & { ports: { admin: number; upstreams: Readonly<Record<string, number>> } }) | undefined;
  let backend: TestBackend;

  afterEach(async () => {
    if (proc) await stopCli(proc);
    proc = undefined;
    await backend.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reloads the config file', async () => {
    backend = await startBackend('b');
    dir = await mkdtemp(join(tmpdir(), 'meshlet-sighup-'));
    // The CLI reads conf/meshlet.json, a symlink into real/: saving real/meshlet.json is invisible to the
    // watch of conf/, so only the signal can make the sidecar see it.
    const real = join(dir, 'real');
    const conf = join(dir, 'conf');
    await Promise.all([mkdir(real), mkdir(conf)]);
    const raw: Raw = {
      service: { name: 'web', port: backend.port },
      inbound: { address: '127.0.0.1', port: 0 },
      admin: { address: '127.0.0.1', port: 0 },
      logging: { level: 'info', accessLog: false },
      upstreams: [{ name: 'api', port: 0, endpoints: [{ address: '127.0.0.1', port: backend.port }] }],
    };
    await writeFile(join(real, 'meshlet.json'), JSON.stringify(raw));
    await symlink(join(real, 'meshlet.json'), join(conf, 'meshlet.json'));
    proc = await startCliSidecar(join(conf, 'meshlet.json'));
    const admin = `http://127.0.0.1:${proc.ports.admin}`;

    raw.upstreams.push({ name: 'extra', port: 0, endpoints: [{ address: '127.0.0.1', port: backend.port }] });
    await save(join(real, 'meshlet.json'), raw);
    proc.child.kill('SIGHUP');
    await eventually('the reload log line', () => proc!.stdout().includes('"trigger":"sighup"') && proc!.stdout().includes('"config reloaded"'));
    const config = (await (await fetch(`${admin}/config`)).json()) as { upstreams: Array<{ name: string }> };
    expect(config.upstreams.map((u) => u.name)).toEqual(['api', 'extra']);
    expect(proc.child.exitCode).toBeNull();
  });

  it('reaches every worker through the primary with workers: 2', async () => {
    backend = await startBackend('b');
    dir = await mkdtemp(join(tmpdir(), 'meshlet-sighup-'));
    const real = join(dir, 'real');
    const conf = join(dir, 'conf');
    await Promise.all([mkdir(real), mkdir(conf)]);
    const raw: Raw = {
      service: { name: 'web', port: backend.port },
      inbound: { address: '127.0.0.1', port: 0 },
      admin: { address: '127.0.0.1', port: 0 },
      logging: { level: 'info', accessLog: false },
      workers: 2,
      upstreams: [{ name: 'api', port: 0, endpoints: [{ address: '127.0.0.1', port: backend.port }] }],
    };
    await writeFile(join(real, 'meshlet.json'), JSON.stringify(raw));
    await symlink(join(real, 'meshlet.json'), join(conf, 'meshlet.json'));
    proc = await startCliSidecar(join(conf, 'meshlet.json'));
    await eventually('both workers serving', () => proc!.stdout().includes('"all workers serving"'), 20_000);

    raw.upstreams[0].timeouts = { request: '5s' };
    await save(join(real, 'meshlet.json'), raw);
    proc.child.kill('SIGHUP');
    const reloaded = () => proc!.stdout().split('\n').filter((l) => l.includes('"config reloaded"') && l.includes('"trigger":"sighup"'));
    await eventually('a reload in each worker', () => reloaded().length === 2);
    expect(proc.child.exitCode).toBeNull();
  });
});

describe('hot reload with mTLS on', () => {
  let ca: TestCa;
  let dir: string;
  const cleanup: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    ca = await createTestCa({ trustDomain: 'mesh.test' });
  });
  afterAll(async () => {
    await ca.cleanup();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
    await rm(dir, { recursive: true, force: true });
  });

  it('secures an upstream added by a reload, and refuses removing one that security names', async () => {
    const app = await startBackend('greeter');
    cleanup.push(() => app.close());
    const greeter = await startSidecar({ service: { name: 'greeter', port: app.port }, security: { mtls: true, ca: { dir: ca.dir } } });
    cleanup.push(() => greeter.stop());

    dir = await mkdtemp(join(tmpdir(), 'meshlet-reload-mtls-'));
    const file = join(dir, 'meshlet.json');
    const raw: Raw = {
      service: { name: 'frontend', port: 1 },
      inbound: { address: '127.0.0.1', port: 0 },
      admin: { address: '127.0.0.1', port: 0 },
      logging: { level: 'silent', accessLog: false },
      upstreams: [{ name: 'plain', port: 0, endpoints: [{ address: '127.0.0.1', port: app.port }] }],
      security: { mtls: true, ca: { dir: ca.dir }, plaintextUpstreams: ['plain'] },
    };
    await save(file, raw);
    const frontend = new Sidecar(await loadConfigFile(file), { log: silentLogger() });
    const reloader = installConfigReload(frontend, file, 20);
    cleanup.push(() => frontend.stop());
    await frontend.start();
    reloader.stop(); // reloads come from the calls below only

    raw.upstreams.push({ name: 'greeter', port: 0, endpoints: [{ address: '127.0.0.1', port: greeter.ports.inbound }] });
    await save(file, raw);
    expect(await reloader.reload('admin')).toMatchObject({ ok: true });
    const res = await get(`${upstreamUrl(frontend, 'greeter')}/hello`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ backend: 'greeter', url: '/hello' });
    // The second hop (frontend sidecar -> greeter sidecar) was TLS.
    expect(app.lastHeaders?.forwarded).toMatch(/proto=https/);

    raw.upstreams.shift();
    await save(file, raw);
    expect(await reloader.reload('admin')).toMatchObject({ ok: false, problems: ['security.plaintextUpstreams[0]: no upstream is named "plain" (meshlet.json)'] });
    expect(frontend.ports.upstreams.plain).toBeGreaterThan(0);
  });
});
