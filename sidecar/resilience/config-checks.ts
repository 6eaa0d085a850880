/** Config rules across resilience fields that one field's schema cannot see. */
import type { UpstreamConfig } from '../config/schema.ts';

const HASHING = new Set(['ring_hash', 'maglev']);

/** Problems with upstream `i`'s resilience settings, one line each in the loader's format. */
export function resilienceIssues(upstream: UpstreamConfig, i: number, source: string): string[] {
  const at = `upstreams[${i}]`;
  const problems: string[] = [];
  const hashing = HASHING.has(upstream.balancer);
  if (hashing && !upstream.hashPolicy) problems.push(`${at}.hashPolicy: required by balancer ${upstream.balancer} (header, cookie or source_ip), got nothing (${source})`);
  if (!hashing && upstream.hashPolicy) problems.push(`${at}.hashPolicy: only used by the ring_hash and maglev balancers, got balancer "${upstream.balancer}" (${source})`);
  if (hashing && upstream.sticky) problems.push(`${at}.sticky: consistent hashing already pins clients; use sticky with another balancer, got balancer "${upstream.balancer}" (${source})`);
  if (upstream.healthCheck?.type === 'grpc' && upstream.protocol !== 'grpc' && upstream.protocol !== 'http2') {
    problems.push(`${at}.healthCheck.type: grpc checks need an http2 or grpc upstream, got protocol "${upstream.protocol}" (${source})`);
  }
  if (upstream.healthCheck && upstream.healthCheck.type === 'http' && (upstream.protocol === 'grpc' || upstream.protocol === 'http2')) {
    problems.push(`${at}.healthCheck.type: http checks speak HTTP/1.1, which a ${upstream.protocol} upstream's endpoints may not; use grpc or tcp, got "http" (${source})`);
  }
  if (upstream.protocol === 'tcp') {
    for (const field of ['rateLimit', 'hashPolicy', 'sticky'] as const) {
      if (upstream[field]) problems.push(`${at}.${field}: applies to HTTP upstreams only, got protocol "tcp" (${source})`);
    }
  }
  return problems;
}
