import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../sidecar/config/load.ts';
import { DEFAULT_LATENCY_BUCKETS, DEFAULT_TRACE_QUEUE_SIZE } from '../../sidecar/telemetry/config.ts';
import { classIndex, SeriesStats } from '../../sidecar/telemetry/request-stats.ts';

const base = { service: { name: 'app', port: 8080 } };

function problems(telemetry: unknown): string {
  try {
    validateConfig({ ...base, telemetry }, 'meshlet.yaml');
  } catch (err) {
    return (err as Error).message;
  }
  return '';
}

describe('telemetry config', () => {
  it('defaults: tracing decided by the endpoint, W3C in and out, full sampling, process metrics on', () => {
    const { telemetry } = validateConfig(base);
    expect(telemetry.tracing).toMatchObject({ sampleRatio: 1, maxQueueSize: DEFAULT_TRACE_QUEUE_SIZE, propagation: { accept: ['tracecontext'], emit: ['tracecontext'] } });
    expect(telemetry.tracing.enabled).toBeUndefined();
    expect(telemetry.tracing.endpoint).toBeUndefined();
    expect(telemetry.metrics).toEqual({ latencyBuckets: DEFAULT_LATENCY_BUCKETS, processMetrics: true });
  });

  it('names the field of each mistake', () => {
    expect(problems({ tracing: { sampleRatio: 2 } })).toContain('telemetry.tracing.sampleRatio: expected a number from 0 to 1, got 2 (meshlet.yaml)');
    expect(problems({ tracing: { endpoint: 'collector:4318' } })).toContain('telemetry.tracing.endpoint: expected an http:// or https:// URL');
    expect(problems({ tracing: { propagation: { emit: ['jaeger'] } } })).toContain('telemetry.tracing.propagation.emit[0]');
    expect(problems({ tracing: { propagation: { emit: [] } } })).toContain('telemetry.tracing.propagation.emit: expected at least one of tracecontext, b3, b3multi');
    expect(problems({ tracing: { maxQueueSize: 10, maxExportBatchSize: 20 } })).toContain('telemetry.tracing.maxExportBatchSize: must not exceed maxQueueSize');
    expect(problems({ tracing: { batchDelay: 'soon' } })).toContain('telemetry.tracing.batchDelay');
    expect(problems({ metrics: { latencyBuckets: [0.1, 0.05] } })).toContain('telemetry.metrics.latencyBuckets: expected strictly increasing seconds');
    expect(problems({ traces: {} })).toContain('telemetry: unknown field "traces"');
  });
});

describe('request stats', () => {
  it('classes statuses, with none for a client that left first', () => {
    expect([0, 101, 200, 302, 404, 503, 600].map(classIndex)).toEqual([0, 1, 2, 3, 4, 5, 0]);
  });

  it('puts a latency in the first bucket whose bound is not below it (Prometheus le)', () => {
    const s = new SeriesStats({ direction: 'outbound', upstream: 'x' }, [0.1, 1]);
    for (const seconds of [0.05, 0.1, 0.5, 1, 7]) s.record(200, seconds, 10, 20);
    expect([...s.buckets[2]!]).toEqual([2, 2, 1]);
    expect(s.count[2]).toBe(5);
    expect(s.sum[2]).toBeCloseTo(8.65);
    expect([s.received, s.sent]).toEqual([50, 100]);
  });
});
