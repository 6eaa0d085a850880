/** Runs wrk pinned to a CPU and reads the JSON line printed by wrk/report.lua. */
import { join } from 'node:path';
import { runPinned } from './procs.ts';

export interface WrkResult {
  readonly requests: number;
  readonly durationUs: number;
  readonly bytes: number;
  readonly errors: { connect: number; read: number; write: number; status: number; timeout: number };
  readonly latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
  /** Derived: requests per second and megabytes (10^6) per second. */
  readonly rps: number;
  readonly mbps: number;
}

export interface WrkOptions {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  /** Per-connection pause between requests (ms) for a fixed moderate rate. */
  readonly thinkMs?: number;
  /** Draw each think time at random from [thinkMs/2, 3*thinkMs/2] so connections do not fall into step. */
  readonly jitter?: boolean;
  readonly headers?: readonly string[];
  readonly cpu?: string;
}

const SCRIPT = join(import.meta.dirname, '..', 'wrk', 'report.lua');

export async function wrk(options: WrkOptions): Promise<WrkResult> {
  const args = ['-t1', `-c${options.connections}`, `-d${options.seconds}s`, '--timeout', '10s', '-s', SCRIPT];
  for (const h of options.headers ?? []) args.push('-H', h);
  args.push(options.url, '--', String(options.thinkMs ?? 0));
  if (options.jitter) args.push('jitter');
  const out = await runPinned(options.cpu, 'wrk', args, (options.seconds + 30) * 1000);
  const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (!line) throw new Error(`wrk printed no result for ${options.url}:\n${out}`);
  const raw = JSON.parse(line.slice('WRKJSON '.length)) as {
    requests: number;
    duration_us: number;
    bytes: number;
    errors: WrkResult['errors'];
    latency_us: WrkResult['latencyUs'];
  };
  const seconds = raw.duration_us / 1e6;
  return {
    requests: raw.requests,
    durationUs: raw.duration_us,
    bytes: raw.bytes,
    errors: raw.errors,
    latencyUs: raw.latency_us,
    rps: raw.requests / seconds,
    mbps: raw.bytes / seconds / 1e6,
  };
}

/** Socket errors, timeouts and non-2xx/3xx responses of a run, all together. */
export function wrkErrorCount(result: WrkResult): number {
  const e = result.errors;
  return e.connect + e.read + e.write + e.status + e.timeout;
}
