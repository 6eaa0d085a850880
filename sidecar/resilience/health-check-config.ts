/** Config of active health checks (HTTP GET with expected status, TCP connect, or gRPC Health/Check). */
import { z } from 'zod';
import { duration } from '../config/duration.ts';

export const DEFAULT_HEALTH_INTERVAL_MS = 5000;
export const DEFAULT_HEALTH_TIMEOUT_MS = 1000;
export const DEFAULT_HEALTHY_THRESHOLD = 2;
export const DEFAULT_UNHEALTHY_THRESHOLD = 3;

export const healthCheckSchema = z
  .strictObject({
    type: z
      .enum(['http', 'tcp', 'grpc'])
      .default('http')
      .describe('http: GET `path` and expect `expectedStatuses`; tcp: a connect is enough; grpc: grpc.health.v1 Health/Check must answer SERVING (http2/grpc upstreams) (default http)'),
    service: z.string().optional().describe('grpc checks: the service name asked about; unset or empty asks about the server as a whole'),
    path: z.string().startsWith('/', { error: 'expected a path starting with "/"' }).default('/health').describe('Path requested by HTTP checks (default /health)'),
    expectedStatuses: z.array(z.int().min(100).max(599)).min(1).default([200]).describe('Statuses that count as healthy (default [200])'),
    interval: duration(DEFAULT_HEALTH_INTERVAL_MS, 'Time between checks of one endpoint (jittered by up to 10%)'),
    timeout: duration(DEFAULT_HEALTH_TIMEOUT_MS, 'A check without an answer within this time fails'),
    healthyThreshold: z.int().min(1).default(DEFAULT_HEALTHY_THRESHOLD).describe(`Passing checks in a row that bring an endpoint back (default ${DEFAULT_HEALTHY_THRESHOLD})`),
    unhealthyThreshold: z.int().min(1).default(DEFAULT_UNHEALTHY_THRESHOLD).describe(`Failing checks in a row that take an endpoint out (default ${DEFAULT_UNHEALTHY_THRESHOLD})`),
  })
  .describe('Active health checks; endpoints start healthy and are checked from sidecar start until drain');

export type HealthCheckConfig = z.infer<typeof healthCheckSchema>;
