/** Starts real sidecars in-process on loopback, with ports chosen by the OS and logs kept quiet. */
import { validateConfig } from '../../sidecar/config/load.ts';
import { Sidecar, type SidecarOptions } from '../../sidecar/sidecar.ts';
import { silentLogger } from '../../sidecar/telemetry/logger.ts';

/** A config object as a user would write it; `service` defaults to a local app on `appPort`. */
export type RawConfig = Record<string, unknown>;

/**
 * Builds a config with every listener on 127.0.0.1 port 0 (upstreams too, unless given), validates it
 * like a file would be, and starts a sidecar. Call `stop()` (or `sidecar.stop()`) in afterEach.
 */
export async function startSidecar(raw: RawConfig, options: SidecarOptions = {}): Promise<Sidecar> {
  const base: RawConfig = {
    inbound: { address: '127.0.0.1', port: 0 },
    admin: { address: '127.0.0.1', port: 0 },
    shutdown: { drainTimeout: '2s' },
    logging: { level: 'silent', accessLog: false },
  };
  const merged: RawConfig = { ...base, ...raw };
  if (raw.inbound) merged.inbound = { ...(base.inbound as object), ...(raw.inbound as object) };
  if (Array.isArray(raw.upstreams)) merged.upstreams = raw.upstreams.map((u: Record<string, unknown>) => ({ port: 0, ...u }));
  const config = validateConfig(merged, 'test-config');
  const sidecar = new Sidecar(config, { log: silentLogger(), ...options });
  await sidecar.start();
  return sidecar;
}

/** Base URL of an upstream's local listener on a started sidecar. */
export function upstreamUrl(sidecar: Sidecar, upstream: string): string {
  const port = sidecar.ports.upstreams[upstream];
  if (port === undefined) throw new Error(`no upstream ${upstream}`);
  return `http://127.0.0.1:${port}`;
}

/** Base URL of a started sidecar's admin API. */
export function adminUrl(sidecar: Sidecar): string {
  return `http://127.0.0.1:${sidecar.ports.admin}`;
}

/** Polls `check` every 20 ms until it returns true or `timeoutMs` passes (then throws naming `what`). */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
