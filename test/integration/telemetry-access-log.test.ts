import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { createLogger } from '../../sidecar/telemetry/logger.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl, type RawConfig } from '../helpers/sidecar.ts';
import { parseMetrics } from '../fixtures/prometheus-text.ts';
import { startOtlpReceiver } from '../fixtures/otlp-receiver.ts';

type Line = Record<string, unknown>;

/** A logger writing into memory, read back as parsed JSON lines. */
function capturedLog(level = 'info') {
  let text = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return {
    log: createLogger(level, stream),
    text: () => text,
    access: (): Line[] =>
      text
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Line)
        .filter((l) => l.log === 'access'),
  };
}

describe('access log: one JSON line per proxied request', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function mesh(extra: RawConfig, level = 'info') {
    const app = await startBackend('app');
    cleanup.push(() => app.close());
    const serverLog = capturedLog(level);
    const server = await startSidecar({ service: { name: 'greeter', port: app.port }, ...extra }, { log: serverLog.log });
    cleanup.push(() => server.stop());
    const clientLog = capturedLog(level);
    const client = await startSidecar(
      {
        service: { name: 'frontend', port: 1 },
        upstreams: [
          { name: 'greeter', endpoints: [{ address: '127.0.0.1', port: server.ports.inbound }] },
          { name: 'nowhere', endpoints: [] },
        ],
        ...extra,
      },
      { log: clientLog.log },
    );
    cleanup.push(() => client.stop());
    return { app, server, client, serverLog, clientLog } as { app: TestBackend; server: Sidecar; client: Sidecar; serverLog: typeof serverLog; clientLog: typeof clientLog };
  }

  it('logs each hop with status, upstream, endpoint, attempts, duration, bytes and the trace id, and no secrets', async () => {
    const otlp = await startOtlpReceiver();
    cleanup.push(() => otlp.close());
    const { app, server, client, serverLog, clientLog } = await mesh({
      logging: { level: 'info', accessLog: true },
      telemetry: { tracing: { endpoint: otlp.url, batchDelay: '20ms' } },
    });
    const res = await request(`${upstreamUrl(client, 'greeter')}/hello?token=s3cretQuery`, {
      method: 'POST',
      body: 'payload',
      headers: { authorization: 'Bearer s3cretBearer', cookie: 'session=s3cretCookie' },
    });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    await eventually('both hops logged', () => clientLog.access().length === 1 && serverLog.access().length === 1);

    const traceId = /^00-([\da-f]{32})-/.exec(String(app.lastHeaders?.traceparent))?.[1];
    expect(traceId).toBeDefined();
    const [outbound] = clientLog.access();
    const [inbound] = serverLog.access();
    expect(outbound).toMatchObject({
      msg: 'access',
      level: 30,
      direction: 'outbound',
      upstream: 'greeter',
      method: 'POST',
      path: '/hello',
      status: 200,
      endpoint: `127.0.0.1:${server.ports.inbound}`,
      attempts: 1,
      client: '127.0.0.1',
      traceId,
    });
    expect(outbound!.durationMs).toEqual(expect.any(Number));
    expect(outbound!.bytesOut).toBeGreaterThan(0);
    expect(outbound!.error).toBeUndefined();
    expect(inbound).toMatchObject({ direction: 'inbound', upstream: 'local', status: 200, endpoint: `127.0.0.1:${app.port}`, traceId });
    await eventually('spans exported', () => otlp.spans.length >= 3);
    expect(new Set(otlp.spans.map((s) => s.traceId))).toEqual(new Set([traceId]));

    for (const text of [clientLog.text(), serverLog.text()]) {
      expect(text).not.toContain('s3cret');
    }
  });

  it("names Meshlet's error reason on proxy-made responses", async () => {
    const { client, clientLog } = await mesh({ logging: { level: 'info', accessLog: true } });
    const res = await request(`${upstreamUrl(client, 'nowhere')}/x`);
    await res.body.text();
    await eventually('the failure logged', () => clientLog.access().length === 1);
    expect(clientLog.access()[0]).toMatchObject({ upstream: 'nowhere', status: 503, error: res.headers['x-meshlet-error'] });
  });

  it("takes the trace id from the caller's traceparent when tracing is off", async () => {
    const { server, serverLog } = await mesh({ logging: { level: 'info', accessLog: true } });
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    await (await request(`http://127.0.0.1:${server.ports.inbound}/t`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } })).body.text();
    await (await request(`http://127.0.0.1:${server.ports.inbound}/u`, { headers: { 'x-b3-traceid': '463ac35c9f6413ad48485a3953bb6124', 'x-b3-spanid': 'a2fb4a1d1a96d312' } })).body.text();
    await eventually('both logged', () => serverLog.access().length === 2);
    expect(serverLog.access().map((l) => l.traceId)).toEqual([traceId, '463ac35c9f6413ad48485a3953bb6124']);
  });

  it('is written whatever the log level, and not at all when logging.accessLog is false', async () => {
    const quiet = await mesh({ logging: { level: 'error', accessLog: true } }, 'error');
    await (await request(`${upstreamUrl(quiet.client, 'greeter')}/a`)).body.text();
    await eventually('access line despite level error', () => quiet.clientLog.access().length === 1);

    const off = await mesh({ logging: { level: 'info', accessLog: false } });
    await (await request(`${upstreamUrl(off.client, 'greeter')}/b`)).body.text();
    // Observers run together at the end of an exchange: once the request is counted, a line would be there.
    await eventually('the request counted', async () => {
      const { values } = parseMetrics(await (await request(`${adminUrl(off.client)}/metrics`)).body.text());
      return values.get('meshlet_requests_total{code_class=2xx,direction=outbound,upstream=greeter}') === 1;
    });
    expect(off.clientLog.access()).toEqual([]);
    expect(off.serverLog.access()).toEqual([]);
    expect(off.clientLog.text()).toContain('sidecar serving');
  });
});
