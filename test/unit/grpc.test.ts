import { describe, expect, it } from 'vitest';
import { meshError } from '../../sidecar/errors.ts';
import { GRPC_STATUS, grpcErrorHeaders, grpcStatusOf, isGrpcRequest, parseGrpcTimeout } from '../../sidecar/protocols/grpc.ts';
import { decodeHealthResponse, encodeHealthRequest } from '../../sidecar/protocols/grpc-health.ts';

describe('grpc-timeout', () => {
  it('parses every unit into milliseconds', () => {
    expect(parseGrpcTimeout('2H')).toBe(7_200_000);
    expect(parseGrpcTimeout('3M')).toBe(180_000);
    expect(parseGrpcTimeout('5S')).toBe(5000);
    expect(parseGrpcTimeout('250m')).toBe(250);
    expect(parseGrpcTimeout('1500u')).toBe(1.5);
    expect(parseGrpcTimeout('2000000n')).toBe(2);
  });

  it('ignores absent or malformed values (more than 8 digits, unknown unit, no unit)', () => {
    expect(parseGrpcTimeout(undefined)).toBeUndefined();
    expect(parseGrpcTimeout('123456789S')).toBeUndefined();
    expect(parseGrpcTimeout('5s')).toBeUndefined();
    expect(parseGrpcTimeout('5')).toBeUndefined();
    expect(parseGrpcTimeout('-5S')).toBeUndefined();
  });
});

describe('gRPC status of proxy-made failures', () => {
  it.each([
    ['NO_HEALTHY_ENDPOINT', GRPC_STATUS.UNAVAILABLE],
    ['DISCOVERY_UNAVAILABLE', GRPC_STATUS.UNAVAILABLE],
    ['UPSTREAM_CONNECT', GRPC_STATUS.UNAVAILABLE],
    ['UPSTREAM_RESET', GRPC_STATUS.UNAVAILABLE],
    ['CIRCUIT_OPEN', GRPC_STATUS.UNAVAILABLE],
    ['OVERFLOW', GRPC_STATUS.UNAVAILABLE],
    ['UPSTREAM_TIMEOUT', GRPC_STATUS.DEADLINE_EXCEEDED],
    ['UNAUTHORIZED', GRPC_STATUS.PERMISSION_DENIED],
    ['RATE_LIMITED', GRPC_STATUS.RESOURCE_EXHAUSTED],
    ['BAD_REQUEST', GRPC_STATUS.INTERNAL],
  ] as const)('%s -> %i', (kind, status) => {
    expect(grpcStatusOf(meshError(kind, 'x'))).toBe(status);
  });

  it('headers carry the status, a percent-encoded message and x-meshlet-error', () => {
    const headers = grpcErrorHeaders(meshError('NO_HEALTHY_ENDPOINT', 'no healthy endpoint for "a b"'));
    expect(headers).toEqual({ 'grpc-status': '14', 'grpc-message': 'no%20healthy%20endpoint%20for%20%22a%20b%22', 'x-meshlet-error': 'no_endpoint' });
  });

  it('recognises gRPC content types only', () => {
    expect(isGrpcRequest('application/grpc')).toBe(true);
    expect(isGrpcRequest('application/grpc+proto')).toBe(true);
    expect(isGrpcRequest('application/grpc-web')).toBe(false);
    expect(isGrpcRequest('application/json')).toBe(false);
    expect(isGrpcRequest(undefined)).toBe(false);
  });
});

describe('grpc.health.v1 messages', () => {
  it('encodes HealthCheckRequest with a gRPC length prefix (empty service: empty message)', () => {
    expect(encodeHealthRequest('')).toEqual(Buffer.from([0, 0, 0, 0, 0]));
    expect(encodeHealthRequest('ab')).toEqual(Buffer.from([0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62]));
  });

  it('decodes the status, skipping unknown fields, and defaults to UNKNOWN (0)', () => {
    expect(decodeHealthResponse(Buffer.from([0, 0, 0, 0, 2, 0x08, 1]))).toBe(1);
    expect(decodeHealthResponse(Buffer.from([0, 0, 0, 0, 2, 0x08, 2]))).toBe(2);
    // field 2 (length-delimited "xy") before the status
    expect(decodeHealthResponse(Buffer.from([0, 0, 0, 0, 6, 0x12, 2, 0x78, 0x79, 0x08, 1]))).toBe(1);
    expect(decodeHealthResponse(Buffer.from([0, 0, 0, 0, 0]))).toBe(0);
  });

  it('rejects truncated or compressed responses', () => {
    expect(() => decodeHealthResponse(Buffer.from([0, 0, 0]))).toThrow(/prefix/);
    expect(() => decodeHealthResponse(Buffer.from([0, 0, 0, 0, 5, 0x08]))).toThrow(/truncated/);
    expect(() => decodeHealthResponse(Buffer.from([1, 0, 0, 0, 2, 0x08, 1]))).toThrow(/compressed/);
  });
});
