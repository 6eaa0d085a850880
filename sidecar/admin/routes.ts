import type { Sidecar } from '../sidecar.ts';
import { isLoopback, redactSecrets, sendJson } from './server.ts';

/** /ready, /live, /config, /endpoints and POST /shutdown. */
export function registerCoreRoutes(sidecar: Sidecar): void {
  const { admin } = sidecar;
  admin.route('GET', '/live', (_req, res) => sendJson(res, 200, { live: true }));
  admin.route('GET', '/ready', (_req, res) => {
    const ready = sidecar.state === 'serving';
    sendJson(res, ready ? 200 : 503, { ready, state: sidecar.state });
  });
  admin.route('GET', '/config', (_req, res) => sendJson(res, 200, redactSecrets(sidecar.config)));
  admin.route('GET', '/endpoints', (_req, res) => {
    const now = Date.now();
    const upstreams: Record<string, unknown> = {};
    for (const [name, cluster] of sidecar.clusters) {
      upstreams[name] = {
        service: cluster.service,
        discovered: cluster.discovered,
        endpoints: cluster.endpoints.map((s) => ({
          address: s.endpoint.address,
          port: s.endpoint.port,
          weight: s.weight,
          tags: s.endpoint.tags,
          state: !s.healthy ? 'unhealthy' : s.ejectedUntil > now ? 'ejected' : 'healthy',
          activeRequests: s.active,
          ...(s.ejectedUntil > now ? { ejectedUntil: new Date(s.ejectedUntil).toISOString() } : {}),
        })),
      };
    }
    sendJson(res, 200, { upstreams, providers: sidecar.registry.providerStatus() });
  });
  admin.route('POST', '/shutdown', (req, res) => {
    // Jobs end by calling this when their work is done (the sidecar would otherwise outlive them). Only
    // the pod itself may: even with admin.address opened up, a remote caller cannot stop the sidecar.
    if (!isLoopback(req.socket.remoteAddress)) {
      sendJson(res, 403, { error: `POST /shutdown is allowed from loopback only, not from ${req.socket.remoteAddress}` });
      return;
    }
    sendJson(res, 202, { shuttingDown: true });
    setImmediate(() => void sidecar.stop());
  });
}
