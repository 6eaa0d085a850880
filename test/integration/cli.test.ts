/**
 * The real `meshlet` CLI as users and containers run it: a config error exits non-zero naming field and
 * file; SIGTERM drains in-flight requests and exits 0; `wait-ready` blocks until the sidecar is ready;
 * the demo runs and shows both instances answering.
 */
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { freePort } from '../../examples/demo.ts';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { closeServer, startBackend } from '../helpers/backend.ts';
import { alive, runCli, startCliSidecar, stopCli, type CliProcess } from '../helpers/cli.ts';
import { eventually, startSidecar } from '../helpers/sidecar.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'meshlet-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function track(proc: CliProcess): CliProcess {
  cleanup.push(() => stopCli(proc));
  return proc;
}

describe('meshlet sidecar', () => {
  it('refuses a bad config file: exit 1, one line per problem naming the field and the file', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'service: { name: frontend, port: 8080 }\nupstreams:\n  - { name: a, port: 9001 }\n  - { name: b, port: abc, balancer: fastest }\n');
    const proc = track(runCli(['sidecar', '--config', file]));
    expect(await proc.exited).toBe(1);
    expect(proc.stderr()).toContain('upstreams[1].port: expected integer 0-65535, got "abc" (bad.yaml)');
    expect(proc.stderr()).toMatch(/upstreams\[1\]\.balancer: expected one of .*, got "fastest" \(bad\.yaml\)/);
    expect(proc.stderr()).not.toMatch(/\n\s+at /); // a message, not a stack trace
  });

  it('exits 1 with a clear message when a port is taken', async () => {
    const busy = await startBackend('busy');
    cleanup.push(() => busy.close());
    const file = join(dir, 'busy.yaml');
    await writeFile(file, `service: { name: a, port: 1 }\ninbound: { address: 127.0.0.1, port: ${busy.port} }\nadmin: { port: 0 }\n`);
    const proc = track(runCli(['sidecar', '--config', file]));
    expect(await proc.exited).toBe(1);
    expect(proc.stderr()).toContain(`cannot listen on 127.0.0.1:${busy.port} for inbound: EADDRINUSE (address already in use)`);
  });

  it('on SIGTERM finishes the request in flight, refuses new inbound connections, and exits 0', async () => {
    const held: ServerResponse[] = [];
    const app = await startBackend('app', (req, res) => {
      req.resume();
      held.push(res);
    });
    cleanup.push(() => app.close());
    const file = join(dir, 'term.yaml');
    await writeFile(
      file,
      [
        `service: { name: app, port: ${app.port} }`,
        'inbound: { address: 127.0.0.1, port: 0 }',
        'admin: { port: 0 }',
        'shutdown: { drainTimeout: 20s }',
        'logging: { level: info, accessLog: false }',
        'upstreams:',
        `  - { name: self, port: 0, endpoints: [{ address: 127.0.0.1, port: ${app.port} }] }`,
      ].join('\n'),
    );
    const proc = await startCliSidecar(file);
    track(proc);
    const inbound = request(`http://127.0.0.1:${proc.ports.inbound}/in`).then(async (res) => `${res.statusCode} ${await res.body.text()}`);
    const outbound = request(`http://127.0.0.1:${proc.ports.upstreams.self}/out`).then(async (res) => `${res.statusCode} ${await res.body.text()}`);
    await eventually('both requests reached the app', () => held.length === 2);
    proc.child.kill('SIGTERM');
    await eventually('the sidecar is draining', () => proc.stdout().includes('"msg":"draining"'));
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(proc.ports.inbound, '127.0.0.1');
      socket.once('connect', () => resolve('connected'));
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? ''));
    });
    expect(refused).toBe('ECONNREFUSED');
    expect(proc.child.exitCode).toBeNull();
    for (const res of held) res.end(`done ${res.req.url}`);
    expect(await inbound).toBe('200 done /in');
    expect(await outbound).toBe('200 done /out');
    expect(await proc.exited).toBe(0);
  });
});

describe('meshlet wait-ready', () => {
  it('blocks while /ready answers 503 and returns 0 once it answers 200', async () => {
    let polls = 0;
    const admin = createHttpServer((req, res) => {
      polls++;
      res.writeHead(polls <= 3 ? 503 : 200, { 'content-type': 'application/json' }).end('{}');
    });
    await new Promise<void>((resolve) => admin.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => closeServer(admin));
    const proc = track(runCli(['wait-ready', '--admin', `http://127.0.0.1:${(admin.address() as { port: number }).port}`, '--timeout', '20s']));
    expect(await proc.exited).toBe(0);
    expect(polls).toBe(4);
    expect(proc.stdout()).toContain('sidecar ready');
  });

  it('keeps waiting through connection failures until a sidecar comes up on the admin port', async () => {
    // Something that accepts and drops connections holds the port first: each poll fails.
    let attempts = 0;
    const dropper = createNetServer((socket) => {
      attempts++;
      socket.destroy();
    });
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve));
    const port = (dropper.address() as { port: number }).port;
    const proc = track(runCli(['wait-ready', '--admin', `http://127.0.0.1:${port}`, '--timeout', '20s']));
    await eventually('wait-ready polled and retried', () => attempts >= 2, 10_000);
    expect(proc.child.exitCode).toBeNull();
    await closeServer(dropper);
    const sidecar: Sidecar = await startSidecar({ service: { name: 'late', port: 1 }, admin: { address: '127.0.0.1', port } });
    cleanup.push(() => sidecar.stop());
    expect(await proc.exited).toBe(0);
  });

  it('exits 1 naming the admin URL when the timeout passes', async () => {
    const port = await freePort();
    const proc = track(runCli(['wait-ready', '--admin', `http://127.0.0.1:${port}`, '--timeout', '300ms']));
    expect(await proc.exited).toBe(1);
    expect(proc.stderr()).toContain(`http://127.0.0.1:${port}/ready not ready after 300 ms (last: ECONNREFUSED)`);
  });

  it('exits 2 on a bad --timeout', async () => {
    const proc = track(runCli(['wait-ready', '--timeout', 'soon']));
    expect(await proc.exited).toBe(2);
    expect(proc.stderr()).toContain('--timeout: expected a duration');
  });
});

describe('meshlet demo', () => {
  it('runs the demo mesh, shows both instances answering, and exits 0', { timeout: 60_000 }, async () => {
    const proc = track(runCli(['demo', '--requests', '4', '--interval', '10']));
    expect(await proc.exited, proc.stderr()).toBe(0);
    const out = proc.stdout();
    expect(out).toMatch(/#1 200 answered by greeter-[12]/);
    expect(out).toContain('answered by greeter-1');
    expect(out).toContain('answered by greeter-2');
    expect(out).toMatch(/gRPC SayHello through the mesh: "Hello, demo!" answered by greeter-grpc/);
    expect(out).not.toContain('failed');
    expect(out).toMatch(/dashboard\s+http:\/\/127\.0\.0\.1:\d+\/dashboard/);
  });

  it('stopped by a signal while it starts (Ctrl-C in its first seconds), it leaves no sidecar running', { timeout: 60_000 }, async () => {
    const proc = track(runCli(['demo']));
    const pid = proc.child.pid!;
    // The demo's sidecars are its child processes: signal it as soon as the first one is running.
    let children: number[] = [];
    await eventually('the demo started a sidecar', () => (children = childPids(pid)).length > 0, 30_000);
    proc.child.kill('SIGTERM');
    await proc.exited;
    await eventually(`every sidecar the demo started (${children.join(', ')}) is gone`, () => children.every((child) => !alive(child)), 20_000);
  });
});

/** Direct children of a process (Linux: /proc/PID/task/TID/children). */
function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((task) => readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    return [];
  }
}

