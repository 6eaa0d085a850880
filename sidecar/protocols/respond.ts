import { Buffer } from 'node:buffer';
import { MeshletError, meshError } from '../errors.ts';

/** What an error response is written to: node:http's ServerResponse (HTTP/2 compat) or the raw path's WireReply. */
export interface ErrorResponseTarget {
  readonly headersSent: boolean;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body: string): unknown;
  destroy(err?: Error): unknown;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'EADDRNOTAVAIL']);
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'HPE_INVALID_CONSTANT', 'UND_ERR_INFO']);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);
/** The request itself cannot be sent (a header or target the client library refuses): the client's fault. */
const REQUEST_CODES = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_NOT_SUPPORTED']);

/** Maps a failure talking to `peer` into a typed MeshletError (connect, reset, timeout). */
export function upstreamError(err: unknown, peer: string): MeshletError {
  if (err instanceof MeshletError) return err;
  const e = err as { code?: string; message?: string; cause?: { code?: string } };
  const code = e.code ?? e.cause?.code ?? '';
  const detail = `${e.message ?? String(err)}${code ? ` (${code})` : ''}`;
  if (REQUEST_CODES.has(code)) return meshError('BAD_REQUEST', `request cannot be forwarded to ${peer}: ${detail}`, err);
  if (CONNECT_CODES.has(code)) return meshError('UPSTREAM_CONNECT', `cannot connect to ${peer}: ${detail}`, err);
  if (TIMEOUT_CODES.has(code)) return meshError('UPSTREAM_TIMEOUT', `${peer} timed out: ${detail}`, err);
  if (RESET_CODES.has(code) || code.startsWith('HPE_')) return meshError('UPSTREAM_RESET', `${peer} closed the connection: ${detail}`, err);
  if (code.startsWith('ERR_TLS') || code.startsWith('ERR_SSL') || code.includes('CERT')) return meshError('UPSTREAM_CONNECT', `TLS to ${peer} failed: ${detail}`, err);
  return meshError('UPSTREAM_RESET', `${peer} failed: ${detail}`, err);
}

/**
 * The one place where errors become responses. Proxy-made responses carry `x-meshlet-error` so apps
 * can tell them from their upstream's own errors. If the response already started, the only honest
 * signal left is to cut the connection.
 */
export function respondWithError(res: ErrorResponseTarget, err: MeshletError, extraHeaders?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const body = JSON.stringify({ error: err.reason, code: err.code, message: err.message });
  res.writeHead(err.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'x-meshlet-error': err.reason,
    ...err.headers,
    ...extraHeaders,
  });
  res.end(body);
}
