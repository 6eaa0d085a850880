/**
 * One JSON line per proxied HTTP request, written through pino's asynchronous stdout stream. Lines
 * carry no headers and no query string (both may hold credentials), only what tells the request's
 * story: who, where to, what came back, how long, and the trace to look it up in.
 */
import type { Span } from '@opentelemetry/api';
import type { Cluster } from '../cluster/cluster.ts';
import type { ExchangeObserver } from '../protocols/exchange.ts';
import { GRPC_STATUS_NOTE } from '../protocols/grpc.ts';
import type { Logger } from './logger.ts';
import { TRACE_NOTE, traceIdFromHeaders } from './trace-context.ts';
import { pathWithoutQuery } from '../protocols/headers.ts';

/** Access lines are written whatever `logging.level` says: `logging.accessLog` is their switch. */
const ACCESS_LEVEL = 'info';
const CLIENT_NOTE = 'access.client';

/** Builds the access log observer; `localCluster` tells inbound exchanges from outbound ones. */
export function createAccessLog(log: Logger, localCluster: Cluster): ExchangeObserver {
  const access = log.child({ log: 'access' }, { level: ACCESS_LEVEL });
  // A child per cluster serializes the direction and upstream once instead of on every line.
  const perCluster = new Map<Cluster, Logger>();
  const loggerFor = (cluster: Cluster): Logger => {
    let child = perCluster.get(cluster);
    if (!child) {
      const inbound = cluster === localCluster;
      child = access.child({ direction: inbound ? 'inbound' : 'outbound', upstream: inbound ? 'local' : cluster.name });
      perCluster.set(cluster, child);
    }
    return child;
  };
  return {
    onStart(x) {
      // Read now: node:http detaches req.socket once the connection is gone.
      x.notes.set(CLIENT_NOTE, x.req.socket.remoteAddress);
    },
    onEnd(x, outcome) {
      const span = x.notes.get(TRACE_NOTE) as Span | undefined;
      loggerFor(x.cluster).info(
        {
          method: x.method,
          path: pathWithoutQuery(x.path),
          status: outcome.status,
          endpoint: outcome.endpoint?.key,
          attempts: x.attempts,
          durationMs: Math.round(outcome.durationMs * 1000) / 1000,
          bytesIn: outcome.bytesIn,
          bytesOut: outcome.bytesOut,
          client: x.notes.get(CLIENT_NOTE) as string | undefined,
          traceId: span ? span.spanContext().traceId : traceIdFromHeaders(x.req.headers),
          error: outcome.error?.reason,
          route: x.notes.get('route') as string | undefined,
          grpcStatus: x.notes.get(GRPC_STATUS_NOTE) as number | undefined,
        },
        'access',
      );
    },
  };
}
