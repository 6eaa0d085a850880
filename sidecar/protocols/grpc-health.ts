/**
 * The standard gRPC health check (grpc.health.v1.Health/Check, grpc/grpc doc/health-checking.md) of
 * one endpoint, sent over the cluster's own HTTP/2 sessions, so mTLS peers are checked over mTLS with
 * their SPIFFE identity verified like traffic is. The two tiny messages are encoded by hand:
 * HealthCheckRequest { string service = 1; } and HealthCheckResponse { ServingStatus status = 1; }.
 */
import { Buffer } from 'node:buffer';
import { constants, type IncomingHttpHeaders } from 'node:http2';
import type { Cluster } from '../cluster/cluster.ts';
import type { EndpointState } from '../cluster/endpoint-state.ts';
import { h2SessionsFor } from './h2-sessions.ts';

const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

/** A length-prefixed gRPC message holding HealthCheckRequest { service }. */
export function encodeHealthRequest(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  const message = name.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

function readVarint(buf: Buffer, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    if (at >= buf.length) throw new Error('truncated varint');
    const byte = buf[at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, at];
    shift += 7;
    if (shift > 63) throw new Error('varint too long');
  }
}

/** The `status` of a length-prefixed HealthCheckResponse (0, UNKNOWN, when the field is absent). */
export function decodeHealthResponse(frame: Buffer): number {
  if (frame.length < 5) throw new Error('response shorter than a gRPC message prefix');
  if (frame[0] !== 0) throw new Error('compressed health response not supported');
  const length = frame.readUInt32BE(1);
  if (frame.length < 5 + length) throw new Error('truncated gRPC message');
  const message = frame.subarray(5, 5 + length);
  let status = 0;
  for (let at = 0; at < message.length; ) {
    const [tag, next] = readVarint(message, at);
    at = next;
    const field = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) {
      const [value, after] = readVarint(message, at);
      at = after;
      if (field === 1) status = value;
    } else if (wire === 2) {
      const [len, after] = readVarint(message, at);
      at = after + len;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw new Error(`unexpected protobuf wire type ${wire}`);
  }
  return status;
}

/** Resolves undefined when the endpoint answers SERVING for `service`, else why not. */
export async function grpcHealthCheck(cluster: Cluster, state: EndpointState, service: string, signal: AbortSignal): Promise<string | undefined> {
  const { session, tls } = await h2SessionsFor(cluster).get(state);
  const stream = session.request(
    {
      ':method': 'POST',
      ':path': '/grpc.health.v1.Health/Check',
      ':scheme': tls ? 'https' : 'http',
      ':authority': state.key,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'meshlet-health-check',
    },
    { signal },
  );
  stream.end(encodeHealthRequest(service));
  return new Promise<string | undefined>((resolve, reject) => {
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (headers = h));
    stream.on('trailers', (t) => (trailers = t));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('error', (err: Error) => reject(signal.aborted && signal.reason instanceof Error ? signal.reason : err));
    stream.once('close', () => {
      if (stream.rstCode !== constants.NGHTTP2_NO_ERROR && !signal.aborted) return reject(new Error(`stream reset (HTTP/2 code ${stream.rstCode})`));
      const httpStatus = headers[':status'];
      if (Number(httpStatus) !== 200) return resolve(`HTTP status ${String(httpStatus)}`);
      const grpcStatus = trailers['grpc-status'] ?? headers['grpc-status'];
      if (grpcStatus !== '0') {
        const message = trailers['grpc-message'] ?? headers['grpc-message'];
        return resolve(`grpc-status ${String(grpcStatus)}${message ? `: ${decodeURIComponent(String(message))}` : ''}`);
      }
      try {
        const status = decodeHealthResponse(Buffer.concat(chunks));
        resolve(status === 1 ? undefined : `health status ${SERVING_STATUS[status] ?? status}`);
      } catch (err) {
        resolve(`bad health response: ${(err as Error).message}`);
      }
    });
  });
}
