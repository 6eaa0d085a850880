/** Fixtures for resilience tests: backends behind one sidecar upstream named "api", and a closed port. */
import type { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:net';
import { request } from 'undici';
import type { MeshEventMap } from '../../sidecar/telemetry/events.ts';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from './backend.ts';
import { startSidecar, upstreamUrl } from './sidecar.ts';

/** A port nothing listens on: bound once, then released. */
export async function closedPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface UpstreamFixture {
  readonly sidecar: Sidecar;
  readonly backends: TestBackend[];
  readonly url: string;
  /** Events of each kind seen so far. */
  readonly events: { [K in keyof MeshEventMap]: Array<MeshEventMap[K][0]> };
  /** GET (or `method`) a path; resolves status, headers and the parsed JSON body. */
  call(path?: string, options?: { method?: string; body?: string; headers?: Record<string, string> }): Promise<{ status: number; headers: Record<string, unknown>; body: { backend?: string; error?: string } }>;
  close(): Promise<void>;
}

const EVENT_NAMES = ['retry', 'retryBudgetExhausted', 'breakerRejected', 'outlier', 'endpointHealth', 'rateLimited'] as const;

/**
 * Starts `names.length` backends and a sidecar whose upstream "api" has them as static endpoints
 * (plus `extraEndpoints`), with `upstream` merged into the upstream's config.
 */
export async function startUpstream(names: string[], upstream: Record<string, unknown> = {}, extraEndpoints: Array<{ address: string; port: number }> = []): Promise<UpstreamFixture> {
  const backends = await Promise.all(names.map((n) => startBackend(n)));
  const endpoints = [...backends.map((b) => ({ address: '127.0.0.1', port: b.port })), ...extraEndpoints];
  const sidecar = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'api', endpoints, ...upstream }] });
  const events = Object.fromEntries(EVENT_NAMES.map((n) => [n, []])) as unknown as UpstreamFixture['events'];
  const bus = sidecar.events as unknown as EventEmitter;
  for (const name of EVENT_NAMES) bus.on(name, (e: unknown) => (events[name] as unknown[]).push(e));
  const url = upstreamUrl(sidecar, 'api');
  return {
    sidecar,
    backends,
    url,
    events,
    async call(path = '/', options = {}) {
      const res = await request(`${url}${path}`, { method: (options.method ?? 'GET') as 'GET', body: options.body, headers: options.headers });
      const text = await res.body.text();
      let body: { backend?: string; error?: string } = {};
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        body = {};
      }
      return { status: res.statusCode, headers: res.headers as Record<string, unknown>, body };
    },
    async close() {
      await sidecar.stop();
      await Promise.all(backends.map((b) => b.close()));
    },
  };
}

/** Total requests the backends saw. */
export function totalHits(backends: readonly TestBackend[]): number {
  return backends.reduce((sum, b) => sum + b.hits, 0);
}
