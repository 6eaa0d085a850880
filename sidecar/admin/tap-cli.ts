/**
 * `meshlet tap`: prints a sidecar's live requests, one line each, until Ctrl-C. It reads the admin
 * API's `GET /tap` Server-Sent Events stream; filters are passed on as query parameters.
 */
import { Buffer } from 'node:buffer';
import process from 'node:process';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import type { TapEvent } from './tap.ts';
import { DEFAULT_WAIT_READY_ADMIN } from './wait-ready.ts';

const USAGE =
  'usage: meshlet tap [--admin URL] [--upstream NAME] [--direction inbound|outbound] [--method GET] [--status 5xx|503] [--path /prefix] [--json]\n' +
  '  (default admin: http://127.0.0.1:15000; --upstream local or inbound shows calls into the app)';

/** Control characters are shown escaped: a terminal must never act on bytes that came from a request. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** One human-readable line per request. */
export function formatTapLine(e: TapEvent): string {
  const time = e.time.slice(11, 23);
  const status = e.status === 0 ? '---' : String(e.status);
  const parts = [time, e.direction === 'inbound' ? 'in ' : 'out', printable(e.upstream), printable(e.method), printable(e.path), status, `${e.durationMs.toFixed(1)}ms`];
  if (e.endpoint) parts.push(`endpoint=${printable(e.endpoint)}`);
  if (e.attempts > 1) parts.push(`attempts=${e.attempts}`);
  if (e.peer) parts.push(`peer=${printable(e.peer)}`);
  if (e.error) parts.push(`error=${printable(e.error)}`);
  if (e.traceId) parts.push(`trace=${printable(e.traceId)}`);
  return parts.join(' ');
}

/** Splits an SSE byte stream into events (`event` name and joined `data`). */
export async function* readServerSentEvents(body: AsyncIterable<Buffer | string>): AsyncGenerator<{ event: string; data: string }> {
  let buffer = '';
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) yield { event, data: data.join('\n') };
    }
  }
}

/** The CLI command; resolves with the exit code (0 after Ctrl-C, 1 when the stream fails or ends, 2 bad arguments). */
export async function tapCommand(args: string[], signal?: AbortSignal): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        admin: { type: 'string' },
        upstream: { type: 'string' },
        direction: { type: 'string' },
        method: { type: 'string' },
        status: { type: 'string' },
        path: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    process.stderr.write(`meshlet tap: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const admin = (values.admin as string | undefined) ?? DEFAULT_WAIT_READY_ADMIN;
  if (!URL.canParse(admin) || !/^https?:$/.test(new URL(admin).protocol)) {
    process.stderr.write(`meshlet tap: --admin: expected an http:// URL, got "${admin}"\n${USAGE}\n`);
    return 2;
  }
  const url = new URL('/tap', admin);
  for (const name of ['upstream', 'direction', 'method', 'status', 'path']) {
    const value = values[name];
    if (typeof value === 'string') url.searchParams.set(name, value);
  }

  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  signal?.addEventListener('abort', stop, { once: true });
  try {
    // undici's request, not fetch: fetch refuses "bad ports" an admin API may use.
    const res = await request(url, { signal: controller.signal, headers: { accept: 'text/event-stream' }, bodyTimeout: 0 });
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: show as is
      }
      process.stderr.write(`meshlet tap: ${url.href} answered ${res.statusCode}: ${message}\n`);
      return 1;
    }
    for await (const { event, data } of readServerSentEvents(res.body)) {
      if (event === 'hello') {
        const hello = JSON.parse(data) as { service: string };
        process.stderr.write(`tapping ${printable(hello.service)} at ${admin} (Ctrl-C to stop)\n`);
      } else if (event === 'dropped') {
        process.stderr.write(`(${(JSON.parse(data) as { dropped: number }).dropped} requests skipped: reading too slowly)\n`);
      } else if (event === 'message') {
        process.stdout.write(values.json ? `${data}\n` : `${formatTapLine(JSON.parse(data) as TapEvent)}\n`);
      }
    }
    process.stderr.write('meshlet tap: the sidecar closed the stream\n');
    return 1;
  } catch (err) {
    if (controller.signal.aborted) return 0;
    process.stderr.write(`meshlet tap: ${url.href}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
