import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl, type RawConfig } from '../helpers/sidecar.ts';
import { parseMetrics } from '../fixtures/prometheus-text.ts';
import { OTLP_SPAN_KIND, OTLP_STATUS, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../fixtures/otlp-receiver.ts';

const TRACEPARENT = /^00-([\da-f]{32})-([\da-f]{16})-(0[01])$/;

/** Tracing exporting to `receiver` with a short batch delay, so tests wait milliseconds, not seconds. */
function tracing(receiver: OtlpReceiver, extra: Record<string, unknown> = {}): RawConfig {
  return { telemetry: { tracing: { endpoint: receiver.url, batchDelay: '20ms', ...extra } } };
}

function byKind(spans: ReceivedSpan[], kind: number, service: string): ReceivedSpan[] {
  return spans.filter((s) => s.kind === kind && s.resource['service.name'] === service);
}

describe('tracing across sidecars (OTLP export received and decoded)', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function receiver(mode: 'ok' | 'hang' = 'ok'): Promise<OtlpReceiver> {
    const r = await startOtlpReceiver(mode);
    cleanup.push(() => r.close());
    return r;
  }

  async function mesh(clientExtra: RawConfig, serverExtra: RawConfig): Promise<{ app: TestBackend; client: Sidecar; server: Sidecar }> {
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'greeter', port: app.port }, ...serverExtra });
    cleanup.push(() => server.stop());
    const client = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }] }],
      ...clientExtra,
    });
    cleanup.push(() => client.stop());
    return { app, client, server };
  }

  it('a request through two sidecars yields one trace: outbound SERVER -> attempt CLIENT -> inbound SERVER -> app', async () => {
    const otlp = await receiver();
    const { app, client, server } = await mesh(tracing(otlp), tracing(otlp));
    const res = await request(`${upstreamUrl(client, 'greeter')}/hello?token=s3cret`, { headers: { 'user-agent': 'trace-test' } });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    await eventually('three spans exported', () => otlp.spans.length >= 3);
    expect(otlp.errors).toEqual([]);
    expect(otlp.spans).toHaveLength(3);

    const [outbound] = byKind(otlp.spans, OTLP_SPAN_KIND.SERVER, 'frontend');
    const [attempt] = byKind(otlp.spans, OTLP_SPAN_KIND.CLIENT, 'frontend');
    const [inbound] = byKind(otlp.spans, OTLP_SPAN_KIND.SERVER, 'greeter');
    expect(outbound && attempt && inbound).toBeTruthy();
    expect(new Set(otlp.spans.map((s) => s.traceId)).size).toBe(1);
    expect(outbound!.parentSpanId).toBe('');
    expect(attempt!.parentSpanId).toBe(outbound!.spanId);
    expect(inbound!.parentSpanId).toBe(attempt!.spanId);

    // The app needs no tracing code: its request carries the inbound hop as parent.
    const [, traceId, parentId, flags] = TRACEPARENT.exec(String(app.lastHeaders?.traceparent)) ?? [];
    expect(traceId).toBe(inbound!.traceId);
    expect(parentId).toBe(inbound!.spanId);
    expect(flags).toBe('01');

    expect(outbound!.attributes).toMatchObject({
      'http.request.method': 'GET',
      'url.path': '/hello',
      'http.response.status_code': 200,
      'peer.service': 'greeter',
      'meshlet.direction': 'outbound',
      'meshlet.attempts': 1,
      'client.address': '127.0.0.1',
      'user_agent.original': 'trace-test',
    });
    expect(attempt!.attributes).toMatchObject({
      'http.request.method': 'GET',
      'http.response.status_code': 200,
      'server.address': '127.0.0.1',
      'server.port': server.ports.inbound,
      'network.peer.address': '127.0.0.1',
      'peer.service': 'greeter',
      'meshlet.attempt': 1,
    });
    expect(attempt!.attributes['http.request.resend_count']).toBeUndefined();
    expect(inbound!.attributes).toMatchObject({ 'meshlet.direction': 'inbound', 'http.response.status_code': 200, 'server.port': server.ports.inbound });
    // Query strings may hold credentials: never recorded.
    expect(JSON.stringify(otlp.spans)).not.toContain('s3cret');
    expect(outbound!.status.code).toBe(OTLP_STATUS.UNSET);
  });

  it("continues the caller's trace and honours its sampling decision", async () => {
    const otlp = await receiver();
    const { app, client } = await mesh(tracing(otlp), tracing(otlp));
    const unsampled = '0af7651916cd43dd8448eb211c80319c';
    const res1 = await request(`${upstreamUrl(client, 'greeter')}/a`, { headers: { traceparent: `00-${unsampled}-b7ad6b7169203331-00` } });
    await res1.body.text();
    const [, traceId1, , flags1] = TRACEPARENT.exec(String(app.lastHeaders?.traceparent)) ?? [];
    expect(traceId1).toBe(unsampled);
    expect(flags1).toBe('00');

    const sampled = '4bf92f3577b34da6a3ce929d0e0e4736';
    const res2 = await request(`${upstreamUrl(client, 'greeter')}/b`, { headers: { traceparent: `00-${sampled}-00f067aa0ba902b7-01`, tracestate: 'vendor=x' } });
    await res2.body.text();
    expect(app.lastHeaders?.tracestate).toBe('vendor=x');
    await eventually('the sampled trace exported', () => otlp.spans.filter((s) => s.traceId === sampled).length >= 3);
    // Spans are exported in the order they end, so the unsampled ones would have arrived by now.
    expect(otlp.spans.filter((s) => s.traceId === unsampled)).toEqual([]);
    const root = otlp.spans.find((s) => s.traceId === sampled && s.kind === OTLP_SPAN_KIND.SERVER && s.resource['service.name'] === 'frontend');
    expect(root?.parentSpanId).toBe('00f067aa0ba902b7');
  });

  it('sampleRatio 0 records no new traces but still propagates an unsampled context', async () => {
    const otlp = await receiver();
    const { app, client } = await mesh(tracing(otlp, { sampleRatio: 0 }), tracing(otlp));
    const res = await request(`${upstreamUrl(client, 'greeter')}/x`);
    await res.body.text();
    const [, traceId, , flags] = TRACEPARENT.exec(String(app.lastHeaders?.traceparent)) ?? [];
    expect(traceId).toMatch(/^[\da-f]{32}$/);
    expect(flags).toBe('00');
    // A sampled caller is still honoured through the same sidecars.
    const sampled = '5bf92f3577b34da6a3ce929d0e0e4736';
    await (await request(`${upstreamUrl(client, 'greeter')}/y`, { headers: { traceparent: `00-${sampled}-00f067aa0ba902b7-01` } })).body.text();
    await eventually('the sampled trace exported', () => otlp.spans.some((s) => s.traceId === sampled && s.resource['service.name'] === 'greeter'));
    expect(otlp.spans.filter((s) => s.traceId === traceId)).toEqual([]);
  });

  it('accepts B3 (single and multi header) and emits W3C when configured so', async () => {
    const otlp = await receiver();
    const { app, client } = await mesh(tracing(otlp, { propagation: { accept: ['b3'], emit: ['tracecontext'] } }), tracing(otlp));
    const single = '80f198ee56343ba864fe8b2a57d3eff7';
    await (await request(`${upstreamUrl(client, 'greeter')}/s`, { headers: { b3: `${single}-e457b5a2e4d86bd1-1` } })).body.text();
    expect(TRACEPARENT.exec(String(app.lastHeaders?.traceparent))?.[1]).toBe(single);
    expect(app.lastHeaders?.b3).toBeUndefined();

    const multi = '463ac35c9f6413ad48485a3953bb6124';
    await (await request(`${upstreamUrl(client, 'greeter')}/m`, { headers: { 'x-b3-traceid': multi, 'x-b3-spanid': 'a2fb4a1d1a96d312', 'x-b3-sampled': '1' } })).body.text();
    expect(TRACEPARENT.exec(String(app.lastHeaders?.traceparent))?.[1]).toBe(multi);
    expect(app.lastHeaders?.['x-b3-traceid']).toBeUndefined();
    await eventually('both B3 traces exported', () => [single, multi].every((t) => otlp.spans.filter((s) => s.traceId === t).length >= 3));
    const root = otlp.spans.find((s) => s.traceId === multi && s.kind === OTLP_SPAN_KIND.SERVER && s.resource['service.name'] === 'frontend');
    expect(root?.parentSpanId).toBe('a2fb4a1d1a96d312');
  });

  it('emits B3 single and multi headers when configured, and ignores W3C when only B3 is accepted', async () => {
    const otlp = await receiver();
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'greeter', port: app.port }, ...tracing(otlp, { propagation: { accept: ['b3'], emit: ['b3', 'b3multi'] } }) });
    cleanup.push(() => server.stop());
    const callerTrace = '4bf92f3577b34da6a3ce929d0e0e4736';
    await (await request(`http://127.0.0.1:${server.ports.inbound}/z`, { headers: { traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` } })).body.text();
    const b3 = String(app.lastHeaders?.b3);
    const [traceId, spanId, sampled] = b3.split('-');
    expect(traceId).toMatch(/^[\da-f]{32}$/);
    expect(traceId).not.toBe(callerTrace);
    expect(sampled).toBe('1');
    expect(app.lastHeaders?.['x-b3-traceid']).toBe(traceId);
    expect(app.lastHeaders?.['x-b3-spanid']).toBe(spanId);
    expect(app.lastHeaders?.['x-b3-sampled']).toBe('1');
    // A format the hop does not emit is removed rather than forwarded stale.
    expect(app.lastHeaders?.traceparent).toBeUndefined();
    await eventually('inbound span exported', () => otlp.spans.length >= 1);
    expect(otlp.spans[0]!.spanId).toBe(spanId);
  });

  it('gives every attempt its own CLIENT span under the one SERVER span', async () => {
    const otlp = await receiver();
    let calls = 0;
    // The app fails the first call and answers the second.
    const app = await startBackend('app', (req, res) => {
      req.resume();
      res.writeHead(++calls === 1 ? 503 : 200, { 'content-type': 'text/plain' }).end('x');
    });
    cleanup.push(() => app.close());
    const server = await startSidecar({ service: { name: 'greeter', port: app.port }, ...tracing(otlp) });
    cleanup.push(() => server.stop());
    // The resilience layer's retry policy (503 on GET is retried by default) makes the second attempt.
    const client = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }], retries: { backoffBase: '1ms' } }],
      ...tracing(otlp),
    });
    cleanup.push(() => client.stop());

    const res = await request(`${upstreamUrl(client, 'greeter')}/retry`);
    expect(res.statusCode).toBe(200);
    await res.body.text();
    await eventually('5 spans exported', () => otlp.spans.length >= 5);
    const [root] = byKind(otlp.spans, OTLP_SPAN_KIND.SERVER, 'frontend');
    const attempts = byKind(otlp.spans, OTLP_SPAN_KIND.CLIENT, 'frontend').sort((a, b) => Number(a.attributes['meshlet.attempt']) - Number(b.attributes['meshlet.attempt']));
    expect(attempts).toHaveLength(2);
    for (const a of attempts) expect(a.parentSpanId).toBe(root!.spanId);
    expect(attempts[0]!.attributes).toMatchObject({ 'meshlet.attempt': 1, 'http.response.status_code': 503, 'error.type': '503' });
    expect(attempts[0]!.attributes['http.request.resend_count']).toBeUndefined();
    expect(attempts[0]!.status.code).toBe(OTLP_STATUS.ERROR);
    expect(attempts[1]!.attributes).toMatchObject({ 'meshlet.attempt': 2, 'http.request.resend_count': 1, 'http.response.status_code': 200 });
    expect(attempts[1]!.status.code).toBe(OTLP_STATUS.UNSET);
    expect(root!.attributes).toMatchObject({ 'meshlet.attempts': 2, 'http.response.status_code': 200 });
    // Each attempt reached the peer sidecar as its own child.
    const inbound = byKind(otlp.spans, OTLP_SPAN_KIND.SERVER, 'greeter');
    expect(inbound.map((s) => s.parentSpanId).sort()).toEqual(attempts.map((a) => a.spanId).sort());
  });

  it('marks proxy-made failures as errors with the x-meshlet-error reason', async () => {
    const otlp = await receiver();
    const client = await startSidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'nowhere', endpoints: [] }],
      ...tracing(otlp),
    });
    cleanup.push(() => client.stop());
    const res = await request(`${upstreamUrl(client, 'nowhere')}/`);
    expect(res.statusCode).toBe(503);
    await res.body.text();
    await eventually('the failed exchange exported', () => otlp.spans.length >= 2);
    const [root] = byKind(otlp.spans, OTLP_SPAN_KIND.SERVER, 'frontend');
    const [attempt] = byKind(otlp.spans, OTLP_SPAN_KIND.CLIENT, 'frontend');
    expect(root!.status.code).toBe(OTLP_STATUS.ERROR);
    expect(root!.attributes['error.type']).toBe(res.headers['x-meshlet-error']);
    expect(attempt!.status.code).toBe(OTLP_STATUS.ERROR);
    expect(attempt!.attributes['server.address']).toBeUndefined();
  });
});

describe('trace export never holds up requests', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function scrape(sidecar: Sidecar): Promise<Map<string, number>> {
    return parseMetrics(await (await request(`${adminUrl(sidecar)}/metrics`)).body.text()).values;
  }

  it('a collector that accepts and never answers: every request succeeds, overflowing spans are dropped and counted', async () => {
    const otlp = await startOtlpReceiver('hang');
    cleanup.push(() => otlp.close());
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const sidecar = await startSidecar({
      service: { name: 'greeter', port: app.port },
      telemetry: { tracing: { endpoint: otlp.url, batchDelay: '10ms', maxQueueSize: 4, maxExportBatchSize: 2, exportTimeout: '1s' } },
    });
    cleanup.push(() => sidecar.stop());
    for (let i = 0; i < 30; i++) {
      const res = await request(`http://127.0.0.1:${sidecar.ports.inbound}/r${i}`);
      expect(res.statusCode).toBe(200);
      await res.body.text();
    }
    expect(otlp.requests).toBeGreaterThan(0);
    const metrics = await scrape(sidecar);
    expect(metrics.get('meshlet_trace_spans_dropped_total{reason=queue_full}')).toBeGreaterThan(0);
    expect(metrics.get('meshlet_trace_queue_spans')).toBeLessThanOrEqual(4);
    expect(metrics.get('meshlet_requests_total{code_class=2xx,direction=inbound,upstream=local}')).toBe(30);
  });

  it('a collector that refuses connections: requests succeed and failed exports are counted', async () => {
    const gone = await startOtlpReceiver();
    const url = gone.url;
    await gone.close();
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const sidecar = await startSidecar({
      service: { name: 'greeter', port: app.port },
      telemetry: { tracing: { endpoint: url, batchDelay: '10ms', exportTimeout: '500ms' } },
    });
    cleanup.push(() => sidecar.stop());
    for (let i = 0; i < 5; i++) {
      const res = await request(`http://127.0.0.1:${sidecar.ports.inbound}/r${i}`);
      expect(res.statusCode).toBe(200);
      await res.body.text();
    }
    await eventually('failed exports counted', async () => ((await scrape(sidecar)).get('meshlet_trace_spans_dropped_total{reason=export_failed}') ?? 0) > 0);
    expect((await scrape(sidecar)).get('meshlet_trace_spans_exported_total')).toBe(0);
  });

  it('honours OTEL_EXPORTER_OTLP_ENDPOINT when the config names no endpoint', async () => {
    const otlp = await startOtlpReceiver();
    cleanup.push(() => otlp.close());
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const saved = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = otlp.baseUrl;
    let sidecar: Sidecar;
    try {
      sidecar = await startSidecar({ service: { name: 'greeter', port: app.port }, telemetry: { tracing: { batchDelay: '10ms' } } });
    } finally {
      if (saved === undefined) delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
      else process.env.OTEL_EXPORTER_OTLP_ENDPOINT = saved;
    }
    cleanup.push(() => sidecar.stop());
    await (await request(`http://127.0.0.1:${sidecar.ports.inbound}/env`)).body.text();
    await eventually('span exported to the env endpoint', () => otlp.spans.length >= 1);
    expect(otlp.spans[0]!.attributes['url.path']).toBe('/env');
  });

  it('with tracing off, adds no trace headers and forwards the caller\'s untouched', async () => {
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const sidecar = await startSidecar({ service: { name: 'greeter', port: app.port } });
    cleanup.push(() => sidecar.stop());
    await (await request(`http://127.0.0.1:${sidecar.ports.inbound}/`)).body.text();
    expect(app.lastHeaders?.traceparent).toBeUndefined();
    const caller = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    await (await request(`http://127.0.0.1:${sidecar.ports.inbound}/`, { headers: { traceparent: caller } })).body.text();
    expect(app.lastHeaders?.traceparent).toBe(caller);
  });
});
