/**
 * One load run for the A/B, profile and allocation tools, HTTP/1.1 or HTTP/2 alike: wrk keep-alive
 * (`connections`, default 50), or with `h2` h2load (10 clients x 10 streams, h2c with prior knowledge).
 */
import { h2load, h2loadErrorCount } from './h2load.ts';
import { wrk, wrkErrorCount } from './wrk.ts';

export interface LoadOptions {
  readonly url: string;
  readonly seconds: number;
  readonly cpu?: string | undefined;
  readonly h2?: boolean;
  readonly connections?: number;
  /** wrk only: per-connection pause between requests (ms), for a fixed moderate rate. */
  readonly thinkMs?: number;
  readonly headers?: readonly string[];
}

export interface LoadResult {
  readonly rps: number;
  readonly requests: number;
  readonly mbps: number;
  /** wrk's p99; h2load prints no percentiles, so for HTTP/2 the mean request time. */
  readonly latencyMs: number;
  readonly errors: number;
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { url, seconds, cpu } = options;
  if (options.h2) {
    const r = await h2load({ url, clients: 10, streams: 10, seconds, cpu });
    return { rps: r.rps, requests: r.requests, mbps: r.mbps, latencyMs: r.requestTimeUs.mean / 1000, errors: h2loadErrorCount(r) };
  }
  const r = await wrk({ url, connections: options.connections ?? 50, seconds, thinkMs: options.thinkMs, headers: options.headers, cpu });
  return { rps: r.rps, requests: r.requests, mbps: r.mbps, latencyMs: r.latencyUs.p99 / 1000, errors: wrkErrorCount(r) };
}
