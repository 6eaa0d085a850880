import { describe, expect, it } from 'vitest';
import { addForwardingHeaders, endToEndHeaders } from '../../sidecar/protocols/headers.ts';

describe('hop-by-hop headers', () => {
  it('drops the RFC 9110 hop-by-hop set and whatever Connection names', () => {
    const out = endToEndHeaders({
      connection: 'close, X-Trace-Hop',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      te: 'trailers',
      upgrade: 'h2c',
      'proxy-authorization': 'Basic x',
      'x-trace-hop': '1',
      'x-end': '2',
      'content-type': 'text/plain',
      cookie: undefined,
    });
    expect(out).toEqual({ 'x-end': '2', 'content-type': 'text/plain' });
  });

  it('reads the common Connection values without a parse, with the same result', () => {
    expect(endToEndHeaders({ connection: 'Close', close: 'x', 'x-end': '1' })).toEqual({ 'x-end': '1' });
    expect(endToEndHeaders({ connection: 'keep-alive', 'x-end': '1' })).toEqual({ 'x-end': '1' });
    expect(endToEndHeaders({ connection: 'close,x-hop', 'x-hop': '1', 'x-end': '1' })).toEqual({ 'x-end': '1' });
  });

  it('drops HTTP/2 pseudo-headers: they describe one message, never a field to relay', () => {
    const out = endToEndHeaders({ ':method': 'GET', ':path': '/x', ':authority': 'svc', ':scheme': 'http', 'content-type': 'application/grpc', te: 'trailers' });
    expect(out).toEqual({ 'content-type': 'application/grpc' });
  });
});

describe('forwarding headers', () => {
  it('appends to x-forwarded-for, forwarded and via, and keeps the first proxy proto and host', () => {
    const headers = endToEndHeaders({ 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example', via: '1.1 edge', forwarded: 'for=203.0.113.7;proto=https' });
    addForwardingHeaders(headers, { clientAddress: '10.0.0.5', proto: 'http', host: 'greeter:9001', via: '1.1 meshlet' });
    expect(headers).toEqual({
      'x-forwarded-for': '203.0.113.7, 10.0.0.5',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'shop.example',
      forwarded: 'for=203.0.113.7;proto=https, for=10.0.0.5;proto=http;host="greeter:9001"',
      via: '1.1 edge, 1.1 meshlet',
    });
  });

  it('quotes IPv6 clients in Forwarded and strips quotes from the host', () => {
    const headers = {};
    addForwardingHeaders(headers, { clientAddress: '::1', proto: 'https', host: 'a"b', via: '1.1 meshlet' });
    expect(headers).toMatchObject({ forwarded: 'for="[::1]";proto=https;host="ab"', 'x-forwarded-for': '::1', 'x-forwarded-proto': 'https' });
  });
});
