/**
 * `meshlet demo`: a whole mesh on loopback with one command. Two greeter instances, each behind its own
 * sidecar process, a frontend sidecar whose upstream "greeter" is discovered from a file catalog, and
 * a client loop calling through it and printing which instance answered. Ctrl-C stops everything.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { initCa } from '../certs/store.ts';
import { waitReady } from '../sidecar/admin/wait-ready.ts';
import { startGreeter } from './services/greeter.ts';
import * as grpc from '@grpc/grpc-js';
import { loadGreeter, startGreeterServer } from './grpc/server.ts';

const MAIN = new URL('../sidecar/main.ts', import.meta.url).pathname;

/** Ports freePort handed out in this process: each is for a different listener, none of them open yet. */
const handedOut = new Set<number>();

function askOsForPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A free loopback port, never one this process was given before: the OS may offer a port again once
 * its probe closed, and two sidecars configured with the same port fail (seen in the demo: the frontend's
 * admin port was also the gRPC sidecar's, so one exited with EADDRINUSE while the other answered for it).
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = await askOsForPort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no loopback port that was not already handed out after 100 tries');
}

interface DemoSidecar {
  readonly name: string;
  readonly child: ChildProcess;
  readonly adminPort: number;
}

function startSidecar(name: string, configPath: string, adminPort: number, quiet: boolean): DemoSidecar {
  const child = spawn(process.execPath, [MAIN, 'sidecar', '--config', configPath], { stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'] });
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal === null) process.stderr.write(`sidecar ${name} exited with code ${code}\n`);
  });
  return { name, child, adminPort };
}

/** Ready on its admin port; fails at once, naming the sidecar, if its process exits first. */
async function sidecarReady(sidecar: DemoSidecar, timeoutMs = 15_000): Promise<void> {
  const { child, name, adminPort } = sidecar;
  let onExit: (() => void) | undefined;
  const exited = new Promise<never>((_resolve, reject) => {
    onExit = () => reject(new Error(`sidecar ${name} exited (code ${child.exitCode ?? child.signalCode}) before it was ready`));
    if (child.exitCode !== null || child.signalCode !== null) onExit();
    else child.once('exit', onExit);
  });
  try {
    const { ready, last } = await Promise.race([waitReady(`http://127.0.0.1:${adminPort}`, timeoutMs), exited]);
    if (!ready) throw new Error(`sidecar ${name} (admin port ${adminPort}) not ready after ${timeoutMs} ms (last: ${last})`);
  } finally {
    if (onExit) child.off('exit', onExit);
  }
}

/** One gRPC call through the mesh, printed; resolves whether it succeeded. */
async function grpcHello(port: number): Promise<boolean> {
  const { Greeter } = loadGreeter();
  const client = new Greeter(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const started = performance.now();
  try {
    const reply = await new Promise<{ message: string; instance: string }>((resolve, reject) =>
      (client as unknown as { SayHello: (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r: { message: string; instance: string }) => void) => void }).SayHello(
        { name: 'demo' },
        { deadline: Date.now() + 5000 },
        (err, r) => (err ? reject(err) : resolve(r)),
      ),
    );
    process.stdout.write(`gRPC SayHello through the mesh: "${reply.message}" answered by ${reply.instance} in ${(performance.now() - started).toFixed(1)} ms\n`);
    return true;
  } catch (err) {
    const e = err as grpc.ServiceError;
    process.stdout.write(`gRPC SayHello failed: ${grpc.status[e.code] ?? e.code} ${e.details ?? e.message}\n`);
    return false;
  } finally {
    client.close();
  }
}

/** Runs the demo until Ctrl-C (or `--requests N` calls); resolves with the exit code. */
export async function runDemo(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { requests: { type: 'string' }, interval: { type: 'string', default: '500' }, verbose: { type: 'boolean', default: false } } });
  const maxRequests = values.requests ? Number(values.requests) : Infinity;
  const dir = await mkdtemp(join(tmpdir(), 'meshlet-demo-'));
  const sidecars: DemoSidecar[] = [];
  const stops: Array<() => Promise<void>> = [];
  // Installed before anything starts: a signal during start-up must not leave sidecars behind.
  let stopping = false;
  /**
   * Stops every sidecar and app started so far, taking them off the lists so a later call stops only
   * what started since; calls run one after the other, so awaiting one waits for the earlier ones too.
   */
  let stopChain = Promise.resolve();
  const stopAll = (): Promise<void> =>
    (stopChain = stopChain.then(async () => {
      const children = sidecars.splice(0).map((sidecar) => sidecar.child);
      for (const child of children) child.kill('SIGTERM');
      await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
      await Promise.all(stops.splice(0).map((stop) => stop()));
    }));
  const onSignal = () => {
    stopping = true;
    void stopAll();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const shutdown = async () => {
    stopping = true;
    await stopAll();
    await rm(dir, { recursive: true, force: true });
  };
  /** After a start-up step: a signal came, so stop what the step started too, and end. */
  const abandonStart = async (): Promise<number> => {
    await shutdown();
    return 130;
  };
  const catalogPath = join(dir, 'catalog.yaml');
  // mTLS on: every sidecar signs its own leaf with a throwaway CA in the demo's temp dir.
  const caDir = join(dir, 'ca');
  await initCa({ dir: caDir, trustDomain: 'demo.meshlet.local' });
  const security = { mtls: true, ca: { dir: caDir } };
  // Tracing on: every sidecar exports to the frontend sidecar's admin API, which assembles whole traces
  // for its dashboard (no Jaeger to run).
  const frontendAdmin = await freePort();
  const telemetry = { tracing: { endpoint: `http://127.0.0.1:${frontendAdmin}/v1/traces`, batchDelay: '200ms' } };

  const instances = [];
  for (const instance of ['greeter-1', 'greeter-2']) {
    const appPort = await freePort();
    const inbound = await freePort();
    const admin = await freePort();
    stops.push(await startGreeter(instance, appPort));
    const config = {
      service: { name: 'greeter', port: appPort },
      inbound: { address: '127.0.0.1', port: inbound },
      admin: { port: admin },
      logging: { level: 'warn', accessLog: false },
      security,
      telemetry,
    };
    const path = join(dir, `${instance}.json`);
    await writeFile(path, JSON.stringify(config, null, 2));
    sidecars.push(startSidecar(instance, path, admin, !values.verbose));
    instances.push({ instance, inbound });
    if (stopping) return abandonStart();
  }
  // A gRPC service too: h2 over mTLS between sidecars, h2c to the app, checked with grpc.health.v1.
  const grpcApp = await startGreeterServer(0, 'greeter-grpc');
  stops.push(() => grpcApp.close());
  const grpcInbound = await freePort();
  const grpcAdmin = await freePort();
  const grpcConfig = {
    service: { name: 'greeter-grpc', port: grpcApp.port },
    inbound: { address: '127.0.0.1', port: grpcInbound, protocol: 'grpc' },
    admin: { port: grpcAdmin },
    logging: { level: 'warn', accessLog: false },
    security,
    telemetry,
  };
  const grpcConfigPath = join(dir, 'greeter-grpc.json');
  await writeFile(grpcConfigPath, JSON.stringify(grpcConfig, null, 2));
  sidecars.push(startSidecar('greeter-grpc', grpcConfigPath, grpcAdmin, !values.verbose));
  if (stopping) return abandonStart();
  const grpcUpstreamPort = await freePort();

  await writeFile(catalogPath, `services:\n  greeter:\n${instances.map((i) => `    - { address: 127.0.0.1, port: ${i.inbound} }`).join('\n')}\n`);

  const upstreamPort = await freePort();
  const frontendConfig = {
    service: { name: 'frontend', port: await freePort() },
    inbound: { address: '127.0.0.1', port: await freePort() },
    admin: { port: frontendAdmin },
    upstreams: [
      { name: 'greeter', port: upstreamPort, balancer: 'round_robin' },
      { name: 'greeter-grpc', port: grpcUpstreamPort, protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: grpcInbound }], healthCheck: { type: 'grpc', interval: '2s' } },
    ],
    discovery: { file: { path: catalogPath } },
    logging: { level: 'warn', accessLog: false },
    security,
    telemetry,
  };
  const frontendPath = join(dir, 'frontend.json');
  await writeFile(frontendPath, JSON.stringify(frontendConfig, null, 2));
  sidecars.push(startSidecar('frontend', frontendPath, frontendAdmin, !values.verbose));
  if (stopping) return abandonStart();

  try {
    await Promise.all(sidecars.map((sidecar) => sidecarReady(sidecar)));
  } catch (err) {
    // A signal while waiting stops the sidecars, which then fail their readiness: not an error to report.
    if (stopping) return abandonStart();
    process.stderr.write(`${(err as Error).message}\n`);
    await shutdown();
    return 1;
  }
  process.stdout.write(
    `Meshlet demo mesh is up on loopback:\n` +
      `  greeter-1, greeter-2   each behind a sidecar (inbound ${instances.map((i) => i.inbound).join(', ')})\n` +
      `  frontend sidecar       upstream "greeter" on 127.0.0.1:${upstreamPort}, discovered from ${catalogPath}\n` +
      `  greeter-grpc           gRPC Greeter (examples/grpc) behind a sidecar; frontend upstream "greeter-grpc" on 127.0.0.1:${grpcUpstreamPort}\n` +
      `  admin API              http://127.0.0.1:${frontendAdmin}/endpoints\n` +
      `  dashboard              http://127.0.0.1:${frontendAdmin}/dashboard   (live requests, traces from every sidecar)\n` +
      `  tap                    meshlet tap --admin http://127.0.0.1:${frontendAdmin}\n` +
      `  mTLS                   on between sidecars: SPIFFE IDs from a local CA in ${caDir} (see /certs)\n` +
      `Calling http://127.0.0.1:${upstreamPort}/hello through the mesh (Ctrl-C to stop):\n`,
  );

  let failures = (await grpcHello(grpcUpstreamPort)) ? 0 : 1;
  for (let n = 1; n <= maxRequests && !stopping; n++) {
    const started = performance.now();
    try {
      const res = await fetch(`http://127.0.0.1:${upstreamPort}/hello`);
      const body = (await res.json()) as { instance?: string; error?: string };
      const ms = (performance.now() - started).toFixed(1);
      process.stdout.write(`#${n} ${res.status} answered by ${body.instance ?? `meshlet (${body.error})`} in ${ms} ms\n`);
      if (!res.ok) failures++;
    } catch (err) {
      failures++;
      process.stdout.write(`#${n} failed: ${(err as Error).message}\n`);
    }
    if (n < maxRequests) await new Promise((r) => setTimeout(r, Number(values.interval)));
  }
  await shutdown();
  return failures === 0 ? 0 : 1;
}
