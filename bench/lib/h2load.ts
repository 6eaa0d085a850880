/** Runs h2load (nghttp2) pinned to a CPU for the HTTP/2 workload and parses its text summary. */
import { runPinned } from './procs.ts';

export interface H2loadResult {
  readonly tool: 'h2load';
  /** Requests that got a response (h2load's "succeeded"). */
  readonly requests: number;
  readonly durationUs: number;
  /** Bytes received: headers (HPACK-compressed) and data frames, h2load's "traffic ... total". */
  readonly bytes: number;
  readonly errors: { failed: number; errored: number; timeout: number; status: number };
  /** h2load prints min/max/mean/sd of the request time, no percentiles. */
  readonly requestTimeUs: { min: number; max: number; mean: number; sd: number };
  /** Application protocol h2load negotiated (h2c, h2), when printed. */
  readonly protocol: string | undefined;
  /** Derived: responses per second and megabytes (10^6) per second. */
  readonly rps: number;
  readonly mbps: number;
}

export interface H2loadOptions {
  readonly url: string;
  readonly clients: number;
  /** Concurrent streams per client (h2load -m). */
  readonly streams: number;
  readonly seconds: number;
  readonly cpu?: string;
}

const UNIT_US: Record<string, number> = { us: 1, ms: 1000, s: 1_000_000 };

/** "1.44ms" / "55us" / "1.2s" -> microseconds. */
export function parseDurationUs(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (!match) throw new Error(`h2load: unreadable duration "${text}"`);
  return Number(match[1]) * UNIT_US[match[2]!]!;
}

function field(out: string, re: RegExp, what: string): RegExpExecArray {
  const match = re.exec(out);
  if (!match) throw new Error(`h2load printed no ${what} line:\n${out.slice(-2000)}`);
  return match;
}

/** Parses h2load's final summary (nghttp2 1.4x-1.5x format). Throws naming the missing line. */
export function parseH2load(out: string): H2loadResult {
  const finished = field(out, /^finished in ([\d.]+(?:us|ms|s)), /m, '"finished in"');
  const requests = field(out, /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m, '"requests:"');
  const status = field(out, /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/m, '"status codes:"');
  const traffic = field(out, /^traffic: \S+ \((\d+)\) total/m, '"traffic:"');
  const time = field(out, /^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/m, '"time for request:"');
  const protocol = /^Application protocol: (\S+)/m.exec(out)?.[1];
  const durationUs = parseDurationUs(finished[1]!);
  const succeeded = Number(requests[4]);
  const bytes = Number(traffic[1]);
  const seconds = durationUs / 1e6;
  return {
    tool: 'h2load',
    requests: succeeded,
    durationUs,
    bytes,
    errors: { failed: Number(requests[5]), errored: Number(requests[6]), timeout: Number(requests[7]), status: Number(status[3]) + Number(status[4]) },
    requestTimeUs: { min: parseDurationUs(time[1]!), max: parseDurationUs(time[2]!), mean: parseDurationUs(time[3]!), sd: parseDurationUs(time[4]!) },
    protocol,
    rps: seconds > 0 ? succeeded / seconds : 0,
    mbps: seconds > 0 ? bytes / seconds / 1e6 : 0,
  };
}

/**
 * Errors of one run. h2load's "failed" already counts every stream that did not end in a 2xx/3xx
 * response: "errored" (reset, connection lost, timed out) plus the 4xx/5xx ones.
 */
export function h2loadErrorCount(result: H2loadResult): number {
  return result.errors.failed;
}

export async function h2load(options: H2loadOptions): Promise<H2loadResult> {
  const args = ['-t1', `-c${options.clients}`, `-m${options.streams}`, `-D${options.seconds}`, options.url];
  const out = await runPinned(options.cpu, 'h2load', args, (options.seconds + 30) * 1000);
  const result = parseH2load(out);
  // h2load exits 0 with all-zero figures when no client could connect or agree on HTTP/2: a broken
  // target, not a slow one.
  if (result.protocol === undefined) throw new Error(`h2load opened no HTTP/2 session to ${options.url}:\n${out.slice(-1500)}`);
  return result;
}
