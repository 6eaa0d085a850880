/**
 * `meshlet wait-ready`: blocks until a sidecar's admin `/ready` answers 200. An app container runs it
 * before starting (or as a postStart hook) so the app's first calls do not fail while the sidecar is
 * still starting, the most common complaint about meshes.
 */
import process from 'node:process';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { parseDuration } from '../config/duration.ts';

export const DEFAULT_WAIT_READY_ADMIN = 'http://127.0.0.1:15000';
export const DEFAULT_WAIT_READY_TIMEOUT_MS = 60_000;
/** Pause between polls; short, since the whole point is to start the app as soon as possible. */
const POLL_INTERVAL_MS = 100;
/** One poll never waits longer than this for an answer (a hung admin port must not eat the budget). */
const POLL_TIMEOUT_MS = 2000;

export interface WaitReadyResult {
  readonly ready: boolean;
  /** Why the last poll was not ready (status or connection error). */
  readonly last: string;
}

/** Polls `${admin}/ready` until it answers 200 or `timeoutMs` passes. */
export async function waitReady(admin: string, timeoutMs: number): Promise<WaitReadyResult> {
  const url = new URL('/ready', admin);
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer yet';
  for (;;) {
    const remaining = deadline - Date.now();
    try {
      // undici's request, not fetch: fetch refuses "bad ports" (e.g. 6000, 10080) an admin API may use.
      const res = await request(url, { signal: AbortSignal.timeout(Math.max(1, Math.min(POLL_TIMEOUT_MS, remaining))), reset: true });
      await res.body.dump();
      if (res.statusCode === 200) return { ready: true, last: 'ready' };
      last = `status ${res.statusCode}`;
    } catch (err) {
      last = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    }
    if (Date.now() + POLL_INTERVAL_MS >= deadline) return { ready: false, last };
    await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
  }
}

const USAGE = 'usage: meshlet wait-ready [--admin URL] [--timeout DURATION]   (defaults: http://127.0.0.1:15000, 60s)';

/** The CLI command; resolves with the exit code (0 ready, 1 timed out, 2 bad arguments). */
export async function waitReadyCommand(args: string[]): Promise<number> {
  let values: { admin?: string | undefined; timeout?: string | undefined };
  try {
    ({ values } = parseArgs({ args, options: { admin: { type: 'string' }, timeout: { type: 'string' } } }));
  } catch (err) {
    process.stderr.write(`meshlet wait-ready: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const admin = values.admin ?? DEFAULT_WAIT_READY_ADMIN;
  const timeoutMs = values.timeout === undefined ? DEFAULT_WAIT_READY_TIMEOUT_MS : parseDuration(values.timeout);
  if (timeoutMs === undefined) {
    process.stderr.write(`meshlet wait-ready: --timeout: expected a duration such as 500ms, 2s, 1m, got "${values.timeout}"\n${USAGE}\n`);
    return 2;
  }
  if (!URL.canParse(admin) || !/^https?:$/.test(new URL(admin).protocol)) {
    process.stderr.write(`meshlet wait-ready: --admin: expected an http:// URL, got "${admin}"\n${USAGE}\n`);
    return 2;
  }
  const result = await waitReady(admin, timeoutMs);
  if (result.ready) {
    process.stdout.write(`sidecar ready (${admin})\n`);
    return 0;
  }
  process.stderr.write(`meshlet wait-ready: ${admin}/ready not ready after ${timeoutMs} ms (last: ${result.last})\n`);
  return 1;
}
