import { connect, type Socket } from 'node:net';
import { createServer, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { freePort } from '../../examples/demo.ts';
import { startBackend } from '../helpers/backend.ts';
import { runCli, type CliProcess } from '../helpers/cli.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';
import { openTap, type TapStream } from '../helpers/tap.ts';
import { closedPort } from '../helpers/upstream.ts';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await request(url);
  return { status: res.statusCode, body: await res.body.text() };
}

async function tap(admin: string, query = ''): Promise<TapStream> {
  const stream = await openTap(admin, query);
  cleanup.push(() => stream.close());
  return stream;
}

/** A sidecar for service "web" with upstream "api" (a live backend) and "down" (nothing listening). */
async function webSidecar(extra: Record<string, unknown> = {}) {
  const backend = await startBackend('api-1');
  cleanup.push(() => backend.close());
  const sidecar = await startSidecar({
    service: { name: 'web', port: backend.port },
    upstreams: [
      { name: 'api', endpoints: [{ address: '127.0.0.1', port: backend.port }] },
      { name: 'down', endpoints: [{ address: '127.0.0.1', port: await closedPort() }] },
    ],
    ...extra,
  });
  cleanup.push(() => sidecar.stop());
  return { backend, sidecar, admin: adminUrl(sidecar) };
}

describe('GET /tap', () => {
  it('streams exchanges made through the sidecar, without the query string', async () => {
    const { backend, sidecar, admin } = await webSidecar();
    const all = await tap(admin);
    expect((await get(`${upstreamUrl(sidecar, 'api')}/hello?token=s3cret`)).status).toBe(200);
    expect((await get(`http://127.0.0.1:${sidecar.ports.inbound}/in`)).status).toBe(200);
    await eventually('two tap events', () => all.events.length >= 2);
    const [out, inbound] = all.events;
    expect(out).toMatchObject({ direction: 'outbound', upstream: 'api', method: 'GET', path: '/hello', status: 200, endpoint: `127.0.0.1:${backend.port}`, attempts: 1, client: '127.0.0.1' });
    expect(out!.durationMs).toBeGreaterThan(0);
    expect(Date.parse(out!.time)).not.toBeNaN();
    expect(JSON.stringify(all.events)).not.toContain('s3cret');
    expect(inbound).toMatchObject({ direction: 'inbound', upstream: 'local', path: '/in', status: 200 });
  });

  it('filters by upstream and status class server-side', async () => {
    const { sidecar, admin } = await webSidecar();
    const all = await tap(admin);
    const errors = await tap(admin, 'status=5xx');
    const api = await tap(admin, 'upstream=api');
    expect((await get(`${upstreamUrl(sidecar, 'down')}/x`)).status).toBeGreaterThanOrEqual(500);
    expect((await get(`${upstreamUrl(sidecar, 'api')}/y`)).status).toBe(200);
    await eventually('both events on the unfiltered stream', () => all.events.length >= 2);
    await eventually('filtered streams got theirs', () => errors.events.length >= 1 && api.events.length >= 1);
    expect(errors.events.map((e) => [e.upstream, e.path])).toEqual([['down', '/x']]);
    expect(errors.events[0]!.error).toMatch(/^[a-z_]+$/);
    expect(api.events.map((e) => [e.upstream, e.path, e.status])).toEqual([['api', '/y', 200]]);
  });

  it('refuses an unknown filter, naming it', async () => {
    const { admin } = await webSidecar();
    const res = await get(`${admin}/tap?status=bad`);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error).toContain('status: expected a status (503) or a class (5xx), got "bad"');
  });

  it('a client that stops reading does not stall requests; it is told how many events it missed', async () => {
    // Large paths make large events, so the unread stream's buffers fill after a few hundred requests.
    const app: Server = createServer({ maxHeaderSize: 128 * 1024 }, (_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise((resolve) => { app.closeAllConnections(); app.close(resolve); }));
    const appPort = (app.address() as { port: number }).port;
    const sidecar = await startSidecar({
      service: { name: 'web', port: appPort },
      upstreams: [{ name: 'big', endpoints: [{ address: '127.0.0.1', port: appPort }] }],
      admin: { address: '127.0.0.1', port: 0, tap: { maxBufferedBytes: 64 * 1024 } },
    });
    cleanup.push(() => sidecar.stop());
    const admin = adminUrl(sidecar);

    // The stuck client: subscribes, then never reads.
    const stuck: Socket = connect(sidecar.ports.admin, '127.0.0.1');
    cleanup.push(() => stuck.destroy());
    let received = '';
    stuck.setEncoding('utf8');
    stuck.on('data', (c: string) => (received += c));
    await new Promise<void>((resolve) => stuck.once('connect', resolve));
    stuck.write('GET /tap HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await eventually('stuck client subscribed', () => received.includes('event: hello'));
    stuck.pause();
    const healthy = await tap(admin);

    const total = 400;
    const path = `/${'p'.repeat(30_000)}`;
    const url = `${upstreamUrl(sidecar, 'big')}${path}`;
    let done = 0;
    const worker = async () => {
      while (done < total) {
        done++;
        const res = await request(url);
        expect(res.statusCode).toBe(200);
        await res.body.text();
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    // Every request completed, and a well-behaved listener saw all of them.
    await eventually('the healthy tap saw every request', () => healthy.events.length >= total, 15_000);

    // The stuck client catches up and hears how many events were skipped for it.
    const before = received.length;
    stuck.resume();
    await eventually('stuck client drained', async () => {
      const seen = received.length;
      await new Promise((r) => setTimeout(r, 50));
      return received.length === seen && seen > before;
    }, 15_000);
    expect((await get(`${upstreamUrl(sidecar, 'big')}/after`)).status).toBe(200);
    await eventually('dropped notice', () => /event: dropped\ndata: \{"dropped":(\d+)\}/.test(received));
    const dropped = Number(/event: dropped\ndata: \{"dropped":(\d+)\}/.exec(received)![1]);
    expect(dropped).toBeGreaterThan(0);
    expect(received).toContain('"path":"/after"');
  }, 60_000);
});

describe('meshlet tap', () => {
  it('prints one line per request until Ctrl-C', async () => {
    const { sidecar, admin } = await webSidecar();
    const cli: CliProcess = runCli(['tap', '--admin', admin, '--upstream', 'api']);
    cleanup.push(() => cli.child.kill('SIGKILL'));
    await eventually('tap connected', () => cli.stderr().includes('tapping web'), 15_000);
    expect((await get(`${upstreamUrl(sidecar, 'down')}/not-shown`)).status).toBeGreaterThanOrEqual(500);
    expect((await get(`${upstreamUrl(sidecar, 'api')}/cli-check?secret=1`)).status).toBe(200);
    await eventually('a line for the request', () => cli.stdout().includes('/cli-check'));
    const line = cli.stdout().split('\n').find((l) => l.includes('/cli-check'))!;
    expect(line).toMatch(/^\d\d:\d\d:\d\d\.\d{3} out api GET \/cli-check 200 \d+\.\dms endpoint=127\.0\.0\.1:\d+$/);
    expect(cli.stdout()).not.toContain('not-shown');
    cli.child.kill('SIGINT');
    expect(await cli.exited).toBe(0);
  });

  it('says what is wrong with a bad filter and exits 1', async () => {
    const { admin } = await webSidecar();
    const cli = runCli(['tap', '--admin', admin, '--direction', 'sideways']);
    expect(await cli.exited).toBe(1);
    expect(cli.stderr()).toContain('direction: expected inbound or outbound, got "sideways"');
  });
});

describe('trace store: POST /v1/traces, GET /traces', () => {
  it('two sidecars exporting to one admin API give one trace with parent links', async () => {
    const app = await startBackend('greeter-app');
    cleanup.push(() => app.close());
    const frontendAdmin = await freePort();
    const endpoint = `http://127.0.0.1:${frontendAdmin}/v1/traces`;
    const tracing = { telemetry: { tracing: { endpoint, batchDelay: '20ms' } } };
    const greeter = await startSidecar({ service: { name: 'greeter', port: app.port }, ...tracing });
    cleanup.push(() => greeter.stop());
    const frontend = await startSidecar({
      service: { name: 'frontend', port: 1 },
      admin: { address: '127.0.0.1', port: frontendAdmin },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: greeter.ports.inbound }] }],
      ...tracing,
    });
    cleanup.push(() => frontend.stop());

    expect((await get(`${upstreamUrl(frontend, 'greeter')}/hello`)).status).toBe(200);
    const traceId = /^00-([\da-f]{32})-/.exec(String(app.lastHeaders?.traceparent))![1]!;
    type View = { spanId: string; parentSpanId: string | null; parentMissing: boolean; service: string; kind: string; depth: number };
    let trace: { spans: View[]; services: string[] } | undefined;
    await eventually('three spans from two sidecars in the frontend admin API', async () => {
      const res = await get(`http://127.0.0.1:${frontendAdmin}/traces/${traceId}`);
      if (res.status !== 200) return false;
      trace = JSON.parse(res.body);
      return trace!.spans.length >= 3;
    });
    expect(trace!.spans.map((s) => [s.service, s.kind, s.depth])).toEqual([
      ['frontend', 'server', 0],
      ['frontend', 'client', 1],
      ['greeter', 'server', 2],
    ]);
    const [root, attempt, inbound] = trace!.spans;
    expect(root!.parentSpanId).toBeNull();
    expect(attempt!.parentSpanId).toBe(root!.spanId);
    expect(inbound!.parentSpanId).toBe(attempt!.spanId);
    expect(trace!.spans.every((s) => !s.parentMissing)).toBe(true);
    expect(trace!.services.sort()).toEqual(['frontend', 'greeter']);

    const list = JSON.parse((await get(`http://127.0.0.1:${frontendAdmin}/traces`)).body) as { traces: Array<{ traceId: string; service: string; spanCount: number }> };
    expect(list.traces[0]).toMatchObject({ traceId, service: 'frontend', spanCount: 3 });
  });

  it('keeps the sidecar\'s own spans even when its exporter points elsewhere (here: nowhere)', async () => {
    const { sidecar, admin } = await webSidecar({ telemetry: { tracing: { endpoint: `http://127.0.0.1:${await closedPort()}/v1/traces`, batchDelay: '20ms' } } });
    expect((await get(`${upstreamUrl(sidecar, 'api')}/own`)).status).toBe(200);
    await eventually('own trace listed', async () => {
      const list = JSON.parse((await get(`${admin}/traces`)).body) as { traces: Array<{ service: string; spanCount: number }> };
      return list.traces.length === 1 && list.traces[0]!.spanCount === 2;
    });
    const [row] = (JSON.parse((await get(`${admin}/traces`)).body) as { traces: Array<{ traceId: string; service: string }> }).traces;
    expect(row!.service).toBe('web');
    const trace = JSON.parse((await get(`${admin}/traces/${row!.traceId}`)).body) as { spans: Array<{ kind: string; attributes: Record<string, unknown> }> };
    expect(trace.spans.map((s) => s.kind)).toEqual(['server', 'client']);
    expect(trace.spans[0]!.attributes['url.path']).toBe('/own');
  });

  it('refuses malformed exports with 400 naming the problem, and other formats with 415/413', async () => {
    const { admin } = await webSidecar({ admin: { address: '127.0.0.1', port: 0, traces: { maxRequestBytes: 4096 } } });
    const post = async (body: string | Buffer, headers: Record<string, string> = { 'content-type': 'application/json' }) => {
      const res = await request(`${admin}/v1/traces`, { method: 'POST', body, headers });
      return { status: res.statusCode, body: JSON.parse(await res.body.text()) as { error: string; message: string } };
    };
    const notJson = await post('{"resourceSpans": [');
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toContain('body is not JSON');
    const badId = await post(JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: 'abc', spanId: 'aaaaaaaaaaaaaaaa', name: 'x', startTimeUnixNano: '1', endTimeUnixNano: '2' }] }] }] }));
    expect(badId.status).toBe(400);
    expect(badId.body.message).toContain('resourceSpans[0].scopeSpans[0].spans[0].traceId: expected 32 hex digits');
    const protobuf = await post(Buffer.from([0x0a, 0x00]), { 'content-type': 'application/x-protobuf' });
    expect(protobuf.status).toBe(415);
    expect(protobuf.body.error).toContain('OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json');
    const tooBig = await post(JSON.stringify({ resourceSpans: [], pad: 'x'.repeat(5000) }));
    expect(tooBig.status).toBe(413);
    // gzip is what collectors and SDKs often send.
    const ok = await post(gzipSync(JSON.stringify({ resourceSpans: [] })), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect(ok.status).toBe(200);
    expect((await get(`${admin}/traces/not-an-id`)).status).toBe(400);
    expect((await get(`${admin}/traces/${'ab'.repeat(16)}`)).status).toBe(404);
  });
});
