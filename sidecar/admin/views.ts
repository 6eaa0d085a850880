/**
 * The admin API's built-in views: the live request stream (`GET /tap`), the trace store
 * (`POST /v1/traces` for OTLP/HTTP JSON from any sidecar, `GET /traces`, `GET /traces/<id>`), and the
 * web dashboard (`GET /dashboard`) that shows them with the sidecar's state. No collector, no Jaeger.
 */
import { Buffer } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { createGunzip, createInflate } from 'node:zlib';
import type { Sidecar } from '../sidecar.ts';
import { OtlpFormatError, parseOtlpTraces } from '../telemetry/otlp-json.ts';
import type { TraceStore } from '../telemetry/trace-store.ts';
import { sendJson } from './server.ts';
import { TapHub } from './tap.ts';

/** `GET /traces` rows by default, and at most. */
const DEFAULT_TRACE_LIST = 50;
const MAX_TRACE_LIST = 1000;
const TRACE_ID = /^[\da-f]{32}$/i;

/** The dashboard's files: route -> file and content type. */
const DASHBOARD_FILES: Record<string, { file: string; type: string }> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  '/dashboard/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};
const DASHBOARD_DIR = new URL('./dashboard/', import.meta.url);

/**
 * No inline script or style, nothing from other origins: even if some data slipped into the page as
 * markup, the browser would not run it (the page itself only ever inserts data as text).
 */
const DASHBOARD_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

class BodyError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Reads a request body, decompressing gzip/deflate, refusing more than `max` bytes (after decompression). */
async function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) throw new BodyError(413, `body of ${declared} bytes is over the ${max} byte limit (admin.traces.maxRequestBytes)`);
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  let stream: Readable = req;
  if (encoding === 'gzip') stream = req.pipe(createGunzip());
  else if (encoding === 'deflate') stream = req.pipe(createInflate());
  else if (encoding !== 'identity') throw new BodyError(415, `content-encoding ${encoding} is not supported (gzip, deflate or none)`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) throw new BodyError(413, `body is over the ${max} byte limit (admin.traces.maxRequestBytes)`);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof BodyError) throw err;
    throw new BodyError(400, `body could not be read as ${encoding}: ${(err as Error).message}`);
  }
  return Buffer.concat(chunks);
}

/** Rejects an OTLP export the way the OTLP/HTTP spec asks (a Status with a message), with `error` like the rest of the admin API. */
function rejectExport(req: IncomingMessage, res: ServerResponse, status: number, message: string): void {
  // The rest of a refused body is not read: close the connection rather than parse leftovers as a request.
  if (!req.complete) res.setHeader('connection', 'close');
  sendJson(res, status, { error: `POST /v1/traces: ${message}`, code: status === 400 ? 3 : 0, message });
}

function registerTraceRoutes(sidecar: Sidecar, store: TraceStore): void {
  const { admin } = sidecar;
  const maxBytes = sidecar.config.admin.traces.maxRequestBytes;
  admin.route('POST', '/v1/traces', async (req, res) => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      rejectExport(req, res, 415, `content-type ${type || '(none)'} is not accepted: only OTLP/HTTP JSON (application/json); set OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json`);
      return;
    }
    let body: unknown;
    try {
      const raw = await readBody(req, maxBytes);
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        throw new BodyError(400, `body is not JSON: ${(err as Error).message}`);
      }
      const spans = parseOtlpTraces(body);
      const result = store.add(spans);
      sendJson(res, 200, result.dropped > 0 ? { partialSuccess: { rejectedSpans: result.dropped, errorMessage: `${result.dropped} spans over admin.traces.maxSpansPerTrace were dropped` } } : {});
    } catch (err) {
      if (err instanceof BodyError) rejectExport(req, res, err.status, err.message);
      else if (err instanceof OtlpFormatError) rejectExport(req, res, 400, `not an OTLP JSON trace export: ${err.message}`);
      else throw err;
    }
  });
  admin.route('GET', '/traces', (_req, res, url) => {
    const raw = url.searchParams.get('limit');
    const limit = raw === null ? DEFAULT_TRACE_LIST : Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_TRACE_LIST) {
      sendJson(res, 400, { error: `GET /traces: limit: expected an integer from 1 to ${MAX_TRACE_LIST}, got "${raw}"` });
      return;
    }
    sendJson(res, 200, { traces: store.list(limit), held: store.size, evicted: store.evicted, maxTraces: sidecar.config.admin.traces.maxTraces });
  });
  admin.route('GET', '/traces/*', (_req, res, url) => {
    const id = url.pathname.slice('/traces/'.length);
    if (!TRACE_ID.test(id)) {
      sendJson(res, 400, { error: `GET /traces/<id>: expected a trace id of 32 hex digits, got "${id.slice(0, 64)}"` });
      return;
    }
    const trace = store.get(id);
    if (!trace) sendJson(res, 404, { error: `trace ${id} is not in the store (it keeps the ${sidecar.config.admin.traces.maxTraces} most recently updated traces)` });
    else sendJson(res, 200, trace);
  });
}

function registerDashboard(sidecar: Sidecar): void {
  const cache = new Map<string, Buffer>();
  for (const [path, { file, type }] of Object.entries(DASHBOARD_FILES)) {
    sidecar.admin.route('GET', path, async (_req, res) => {
      let body = cache.get(file);
      if (!body) {
        body = await readFile(new URL(file, DASHBOARD_DIR));
        cache.set(file, body);
      }
      res.writeHead(200, { 'content-type': type, 'content-length': body.length, ...DASHBOARD_HEADERS });
      res.end(body);
    });
  }
}

/** Registers /tap, the trace routes over `traces` and the dashboard; called by installTelemetry. */
export function installAdminViews(sidecar: Sidecar, traces: TraceStore): TapHub {
  const { config } = sidecar;
  const tap = new TapHub({ localCluster: sidecar.localCluster, maxBufferedBytes: config.admin.tap.maxBufferedBytes, service: config.service.name });
  sidecar.observers.push(tap.observer);
  sidecar.admin.route('GET', '/tap', tap.handler);
  registerTraceRoutes(sidecar, traces);
  registerDashboard(sidecar);
  return tap;
}
