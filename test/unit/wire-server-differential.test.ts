/**
 * Differential test: the raw-socket HTTP/1.1 server (WireConnection on llhttp) against node:http, on
 * the same raw request bytes. Request smuggling lives in the gaps between two parsers' readings of one
 * byte stream, so every case compares what each server accepted, how many requests it saw, each
 * request's method/url/version/framing headers/body, and whether the connection stayed open.
 */
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WireConnection } from '../../sidecar/protocols/wire/server-connection.ts';

/** Both servers get the same head limit, so 431s line up. */
const MAX_HEADER_SIZE = 8192;
const H = 'host: x\r\n';

/** One request as a server's handler saw it. */
interface SeenRequest {
  method: string;
  url: string;
  httpVersion: string;
  headers: Record<string, string | string[] | undefined>;
  bodyHex: string;
  /** The parser finished the message (false: still waiting for body bytes when the exchange settled). */
  complete: boolean;
}

/** What one server made of one byte sequence. */
interface Outcome {
  /** Status codes received in order (1xx included). */
  statuses: number[];
  /** Requests whose message the parser finished (node:http also hands over requests whose body a parse error then cut). */
  requests: SeenRequest[];
  /** A request was handed over and its body is still awaited on the open connection. */
  waitingForBody: boolean;
  /** The connection was still open when everything sent was read and answered. */
  open: boolean;
}

/** The request headers that decide framing, routing or the connection's fate. */
const HEADERS_THAT_MATTER = ['host', 'content-length', 'transfer-encoding', 'expect', 'upgrade', 'connection', 'te', 'trailer', 'x-after'];

function pickHeaders(headers: IncomingHttpHeaders): SeenRequest['headers'] {
  const picked: SeenRequest['headers'] = {};
  for (const name of HEADERS_THAT_MATTER) if (headers[name] !== undefined) picked[name] = headers[name];
  return picked;
}

/** Per accepted server socket: the requests its handler saw and a way to tell when the parser finished each. */
interface ServerSide {
  readonly socket: Socket;
  /** `answered`: the reply's bytes reached the socket ('finish'); a pipelined reply waits for the earlier ones. */
  readonly requests: { seen: SeenRequest; parsed: () => boolean; answered: boolean }[];
}

/** Reads a body to the end and answers with a JSON echo; `respond` hides the reply API of each server. */
function echo(
  side: ServerSide,
  request: { method?: string | undefined; url?: string | undefined; httpVersion: string; headers: IncomingHttpHeaders },
  body: Readable | null,
  parsed: () => boolean,
  respond: (json: string, onFlushed: () => void) => void,
): void {
  const seen: SeenRequest = { method: request.method ?? '', url: request.url ?? '', httpVersion: request.httpVersion, headers: pickHeaders(request.headers), bodyHex: '', complete: false };
  const entry = { seen, parsed, answered: false };
  side.requests.push(entry);
  const chunks: Buffer[] = [];
  const finish = () => {
    seen.bodyHex = Buffer.concat(chunks).toString('hex');
    seen.complete = true;
    respond(JSON.stringify(seen), () => (entry.answered = true));
  };
  if (body === null) return finish();
  body.on('data', (c: Buffer) => chunks.push(c));
  body.on('end', finish);
  body.on('error', () => {});
}

/** Internal readable state: `ended` turns true synchronously when the parser pushes the body's end. */
function parserEnded(body: Readable): boolean {
  return (body as unknown as { _readableState: { ended: boolean } })._readableState.ended;
}

interface Pair {
  node: { port: number; sides: Map<number, ServerSide> };
  wire: { port: number; sides: Map<number, ServerSide> };
}

function portOf(server: Server | HttpServer): number {
  return (server.address() as AddressInfo).port;
}

async function startPair(): Promise<{ pair: Pair; close: () => Promise<void> }> {
  const nodeSides = new Map<number, ServerSide>();
  const wireSides = new Map<number, ServerSide>();
  const nodeServer = createHttpServer({ maxHeaderSize: MAX_HEADER_SIZE, keepAliveTimeout: 5000 }, (req, res) => {
    const side = nodeSides.get(req.socket.remotePort ?? -1);
    if (side === undefined) throw new Error('node:http request on an untracked socket');
    echo(side, req, req, () => req.complete, (json, onFlushed) => {
      res.once('finish', onFlushed);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
    });
  });
  nodeServer.on('connection', (socket: Socket) => nodeSides.set(socket.remotePort ?? -1, { socket, requests: [] }));
  const wireServer = createServer({ allowHalfOpen: true }, (socket) => {
    const side: ServerSide = { socket, requests: [] };
    wireSides.set(socket.remotePort ?? -1, side);
    new WireConnection(socket, {
      name: 'diff',
      maxRequestHeadBytes: MAX_HEADER_SIZE,
      headTimeoutMs: 10_000,
      keepAliveTimeoutMs: 5000,
      idleTimeoutMs: 0,
      onRequest: (req, reply) => {
        const body = req.body;
        echo(side, req, body, () => body === null || parserEnded(body), (json, onFlushed) => {
          reply.once('finish', onFlushed);
          reply.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
        });
      },
    });
  });
  await Promise.all([new Promise<void>((r) => nodeServer.listen(0, '127.0.0.1', r)), new Promise<void>((r) => wireServer.listen(0, '127.0.0.1', r))]);
  const close = async () => {
    nodeServer.closeAllConnections();
    for (const side of wireSides.values()) side.socket.destroy();
    await Promise.all([new Promise((r) => nodeServer.close(r)), new Promise((r) => wireServer.close(r))]);
  };
  return { pair: { node: { port: portOf(nodeServer), sides: nodeSides }, wire: { port: portOf(wireServer), sides: wireSides } }, close };
}

/** Status codes of the responses in `bytes`, following content-length framing (a response without one runs to the close). */
function statusesOf(bytes: Buffer): number[] {
  const statuses: number[] = [];
  let at = 0;
  while (at < bytes.length) {
    const headEnd = bytes.indexOf('\r\n\r\n', at, 'latin1');
    if (headEnd < 0) break;
    const head = bytes.toString('latin1', at, headEnd);
    const status = Number(head.slice(9, 12));
    statuses.push(status);
    at = headEnd + 4;
    if (status < 200) continue;
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (length === null) break;
    at += Number(length[1]);
  }
  return statuses;
}

/**
 * Sends `bytes` on a fresh connection and waits, polling with a bound, until the exchange settles:
 * the connection closed, or the server read every byte, the handler answered every request whose
 * message the parser finished, and every byte the server wrote has reached the client.
 */
async function exchange(port: number, sides: Map<number, ServerSide>, bytes: Buffer): Promise<Outcome> {
  const client = connect(port, '127.0.0.1');
  client.on('error', () => {});
  const received: Buffer[] = [];
  let receivedBytes = 0;
  let closed = false;
  client.on('data', (c: Buffer) => {
    received.push(c);
    receivedBytes += c.length;
  });
  client.on('close', () => (closed = true));
  await new Promise<void>((r) => client.once('connect', () => r()));
  const localPort = client.localPort ?? -1;
  client.write(bytes);
  const started = Date.now();
  for (;;) {
    const side = sides.get(localPort);
    if (closed) break;
    if (side !== undefined && !side.socket.destroyed && !side.socket.writableEnded) {
      const allRead = side.socket.bytesRead >= bytes.length;
      const answered = side.requests.every((r) => r.answered || !r.parsed());
      const flushed = side.socket.writableLength === 0 && receivedBytes === side.socket.bytesWritten;
      if (allRead && answered && flushed) break;
    }
    if (Date.now() - started > 5000) throw new Error(`exchange on port ${port} did not settle: ${Buffer.concat(received).toString('latin1')}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  const side = sides.get(localPort);
  client.destroy();
  const seen = side?.requests.map((r) => r.seen) ?? [];
  return {
    statuses: statusesOf(Buffer.concat(received)),
    requests: seen.filter((r) => r.complete),
    waitingForBody: !closed && seen.some((r) => !r.complete),
    open: !closed,
  };
}

interface Case {
  readonly name: string;
  readonly bytes: string | Buffer;
  /**
   * Set where the two servers may differ, with why the wire server's reading is right: `wire` is the
   * wire server's outcome checked instead of equality with node:http.
   */
  readonly differs?: { readonly why: string; readonly wire: (outcome: Outcome, node: Outcome) => void };
}

const get = (target = '/', extra = '') => `GET ${target} HTTP/1.1\r\n${H}${extra}\r\n`;
const post = (headers: string, body: string) => `POST /p HTTP/1.1\r\n${H}${headers}\r\n${body}`;

/** node:http without a 'connect' listener closes silently; the wire server hands CONNECT to the handler and closes after its reply. */
const connectServed: NonNullable<Case['differs']> = {
  why: 'CONNECT goes to the handler (the proxy answers it); what follows its head is tunnel bytes and never parsed as HTTP',
  wire: (wire, node) => {
    expect(node).toEqual({ statuses: [], requests: [], waitingForBody: false, open: false });
    expect(wire.statuses).toEqual([200]);
    expect(wire.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['CONNECT other.example:443']);
    expect(wire.open).toBe(false);
  },
};

/**
 * Bytes after a message that ends the connection: llhttp (strict) fails them with HPE_CLOSED_CONNECTION.
 * node:http answers 400 at once and loses the first reply; the wire server writes the first reply, then closes.
 */
function answersBeforeClosing(version: string): NonNullable<Case['differs']> {
  return {
    why: 'neither hands the second request over; the wire server still answers the first',
    wire: (wire, node) => {
      expect(node.statuses).toEqual([400]);
      expect(wire.statuses).toEqual([200]);
      expect(wire.requests.map((r) => `${r.httpVersion} ${r.url}`)).toEqual([`${version} /1`]);
      expect(node.requests.map((r) => `${r.httpVersion} ${r.url}`)).toEqual([`${version} /1`]);
      expect(wire.open).toBe(false);
    },
  };
}

/**
 * An Upgrade the server does not take: node:http (no 'upgrade' listener) drops the rest of the packet
 * after the head; RFC 9110 7.8 says a server ignoring Upgrade goes on with HTTP/1.1, which the wire
 * server does. It parses the same framing, so it sees a superset, never a different reading.
 */
const upgradeIgnored: NonNullable<Case['differs']> = {
  why: 'the wire server parses the request after an ignored Upgrade; node:http drops those bytes',
  wire: (wire, node) => {
    expect(wire.requests.slice(0, node.requests.length)).toEqual(node.requests);
    expect(wire.requests.map((r) => r.url).slice(node.requests.length)).toEqual(['/2']);
    expect(wire.statuses).toEqual([200, 200]);
    expect(wire.open).toBe(true);
  },
};

const CASES: Case[] = [
  // Baselines.
  { name: 'plain GET', bytes: get() },
  { name: 'POST with content-length', bytes: post('content-length: 5\r\n', 'hello') },
  { name: 'POST chunked', bytes: post('transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'body shorter than content-length (waits)', bytes: post('content-length: 10\r\n', 'hello') },
  { name: 'Connection: close', bytes: get('/', 'connection: close\r\n') },
  { name: 'HTTP/1.0 without keep-alive', bytes: 'GET / HTTP/1.0\r\n\r\n' },
  { name: 'HTTP/1.0 keep-alive', bytes: 'GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n' },
  { name: 'missing Host in HTTP/1.1', bytes: 'GET / HTTP/1.1\r\n\r\n' },
  {
    name: 'two Host headers',
    bytes: `GET / HTTP/1.1\r\n${H}host: y\r\n\r\n`,
    differs: {
      why: 'RFC 9112 3.2 requires a 400; node:http keeps the first Host, a back end may keep the last (routing/cache confusion)',
      wire: (wire, node) => {
        expect(node.statuses).toEqual([200]);
        expect(wire).toEqual({ statuses: [400], requests: [], waitingForBody: false, open: false });
      },
    },
  },
  {
    name: 'two Host headers then a pipelined GET',
    bytes: `GET /1 HTTP/1.1\r\n${H}host: y\r\n\r\n${get('/2')}`,
    differs: {
      why: 'nothing after a refused head is parsed as HTTP',
      wire: (wire) => expect(wire).toEqual({ statuses: [400], requests: [], waitingForBody: false, open: false }),
    },
  },
  { name: 'empty Host in HTTP/1.1', bytes: 'GET / HTTP/1.1\r\nhost: \r\n\r\n' },
  { name: 'HTTP/1.0 without Host', bytes: 'GET / HTTP/1.0\r\n\r\n' },
  // Content-Length and Transfer-Encoding together or repeated.
  { name: 'CL then TE', bytes: post('content-length: 5\r\ntransfer-encoding: chunked\r\n', '0\r\n\r\n') },
  { name: 'TE then CL', bytes: post('transfer-encoding: chunked\r\ncontent-length: 5\r\n', '0\r\n\r\n') },
  { name: 'duplicate CL, equal', bytes: post('content-length: 5\r\ncontent-length: 5\r\n', 'hello') },
  { name: 'duplicate CL, different', bytes: post('content-length: 5\r\ncontent-length: 6\r\n', 'hello!') },
  { name: 'CL as a list "5, 5"', bytes: post('content-length: 5, 5\r\n', 'hello') },
  { name: 'CL with surrounding spaces', bytes: post('content-length:   5  \r\n', 'hello') },
  { name: 'CL with a space inside', bytes: post('content-length: 1 0\r\n', 'helloworld') },
  { name: 'CL with a plus sign', bytes: post('content-length: +5\r\n', 'hello') },
  { name: 'CL negative', bytes: post('content-length: -5\r\n', 'hello') },
  { name: 'CL hex', bytes: post('content-length: 0x5\r\n', 'hello') },
  { name: 'CL with leading zeros', bytes: post('content-length: 0005\r\n', 'hello') },
  { name: 'CL overflowing 64 bits', bytes: post('content-length: 99999999999999999999999\r\n', 'hello') },
  { name: 'CL empty', bytes: post('content-length: \r\n', '') },
  // Transfer-Encoding obfuscations.
  { name: 'TE "chunked " (trailing space)', bytes: post('transfer-encoding: chunked \r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE "Chunked"', bytes: post('transfer-encoding: Chunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE "xchunked"', bytes: post('transfer-encoding: xchunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE "chunked, identity" (chunked not last)', bytes: post('transfer-encoding: chunked, identity\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE "gzip, chunked"', bytes: post('transfer-encoding: gzip, chunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE "gzip" only (no chunked)', bytes: post('transfer-encoding: gzip\r\n', 'hello') },
  { name: 'two TE headers: gzip then chunked', bytes: post('transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'two TE headers: chunked then gzip', bytes: post('transfer-encoding: chunked\r\ntransfer-encoding: gzip\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE chunked in HTTP/1.0', bytes: 'POST /p HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' },
  { name: 'TE with a tab before the value', bytes: post('transfer-encoding:\tchunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE with a vertical tab', bytes: post('transfer-encoding: \x0bchunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  // Chunk framing.
  { name: 'chunk extension', bytes: post('transfer-encoding: chunked\r\n', '5;name=value\r\nhello\r\n0;last\r\n\r\n') },
  { name: 'chunk extension with a quoted string', bytes: post('transfer-encoding: chunked\r\n', '5;name="v a l"\r\nhello\r\n0\r\n\r\n') },
  { name: 'chunk extension with a NUL', bytes: post('transfer-encoding: chunked\r\n', '5;na\x00me\r\nhello\r\n0\r\n\r\n') },
  { name: 'chunk size overflowing 64 bits', bytes: post('transfer-encoding: chunked\r\n', 'fffffffffffffffff5\r\nhello\r\n0\r\n\r\n') },
  { name: 'chunk size with a leading space', bytes: post('transfer-encoding: chunked\r\n', ' 5\r\nhello\r\n0\r\n\r\n') },
  { name: 'chunk size with a trailing space', bytes: post('transfer-encoding: chunked\r\n', '5 \r\nhello\r\n0\r\n\r\n') },
  { name: 'chunk size with 0x prefix', bytes: post('transfer-encoding: chunked\r\n', '0x5\r\nhello\r\n0\r\n\r\n') },
  { name: 'missing CRLF after chunk data', bytes: post('transfer-encoding: chunked\r\n', '5\r\nhelloX\r\n0\r\n\r\n') },
  { name: 'bare LF after chunk size', bytes: post('transfer-encoding: chunked\r\n', '5\nhello\r\n0\r\n\r\n') },
  { name: 'bare LF after chunk data', bytes: post('transfer-encoding: chunked\r\n', '5\r\nhello\n0\r\n\r\n') },
  { name: 'chunked body with trailers, then a GET', bytes: post('transfer-encoding: chunked\r\n', '5\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n') + get('/after') },
  // Line endings, folding, header syntax.
  { name: 'bare LF line endings', bytes: 'GET / HTTP/1.1\nhost: x\n\n' },
  { name: 'bare LF after request line only', bytes: `GET / HTTP/1.1\n${H}\r\n` },
  { name: 'bare CR in a header line', bytes: `GET / HTTP/1.1\r\n${H}x-a: b\rc\r\n\r\n` },
  { name: 'obs-fold continuation line', bytes: `GET / HTTP/1.1\r\n${H}x-a: b\r\n  folded\r\n\r\n` },
  { name: 'obs-fold hiding a TE value', bytes: post('transfer-encoding:\r\n chunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'space before the colon', bytes: post('transfer-encoding : chunked\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'tab before the colon', bytes: `GET / HTTP/1.1\r\nhost\t: x\r\n\r\n` },
  { name: 'NUL in a header value', bytes: `GET / HTTP/1.1\r\n${H}x-a: b\x00c\r\n\r\n` },
  { name: 'CTL (0x01) in a header value', bytes: `GET / HTTP/1.1\r\n${H}x-a: b\x01c\r\n\r\n` },
  { name: 'DEL in a header value', bytes: `GET / HTTP/1.1\r\n${H}x-a: b\x7fc\r\n\r\n` },
  { name: 'obs-text (0x80-0xff) in a header value', bytes: Buffer.from(`GET / HTTP/1.1\r\n${H}x-a: b\xe9c\r\n\r\n`, 'latin1') },
  { name: 'NUL in a header name', bytes: `GET / HTTP/1.1\r\n${H}x-\x00a: b\r\n\r\n` },
  { name: 'non-token character in a header name', bytes: `GET / HTTP/1.1\r\n${H}x(a): b\r\n\r\n` },
  { name: 'header line without a colon', bytes: `GET / HTTP/1.1\r\n${H}no-colon-here\r\n\r\n` },
  { name: 'empty header name', bytes: `GET / HTTP/1.1\r\n${H}: value\r\n\r\n` },
  // Request line.
  { name: 'invalid method token', bytes: 'G@T / HTTP/1.1\r\nhost: x\r\n\r\n' },
  { name: 'lowercase method', bytes: 'get / HTTP/1.1\r\nhost: x\r\n\r\n' },
  { name: 'unknown method', bytes: 'BREW / HTTP/1.1\r\nhost: x\r\n\r\n' },
  { name: 'absolute-form target', bytes: get('http://other.example/p?q=1') },
  { name: 'asterisk-form with OPTIONS', bytes: 'OPTIONS * HTTP/1.1\r\nhost: x\r\n\r\n' },
  { name: 'asterisk-form with GET', bytes: get('*') },
  { name: 'authority-form with CONNECT', bytes: 'CONNECT other.example:443 HTTP/1.1\r\nhost: other.example:443\r\n\r\n', differs: connectServed },
  { name: 'control character in the target', bytes: get('/a\x01b') },
  { name: 'two spaces in the request line', bytes: 'GET  / HTTP/1.1\r\nhost: x\r\n\r\n' },
  { name: 'very long URL inside the limit', bytes: get(`/${'u'.repeat(MAX_HEADER_SIZE - 200)}`) },
  { name: 'URL over the head limit', bytes: get(`/${'u'.repeat(MAX_HEADER_SIZE + 100)}`) },
  { name: 'HTTP/0.9 request line', bytes: 'GET /\r\n' },
  { name: 'HTTP/1.2', bytes: 'GET / HTTP/1.2\r\nhost: x\r\n\r\n' },
  { name: 'HTTP/2.0 with an HTTP/1 head', bytes: 'GET / HTTP/2.0\r\nhost: x\r\n\r\n' },
  { name: 'HTTP/2 connection preface', bytes: Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00', 'latin1') },
  { name: 'lowercase protocol name', bytes: 'GET / http/1.1\r\nhost: x\r\n\r\n' },
  // Pipelining and smuggling classics.
  { name: 'pipelined GET GET in one packet', bytes: get('/1') + get('/2') },
  { name: 'pipelined POST with body then GET', bytes: post('content-length: 5\r\n', 'hello') + get('/2') },
  { name: 'pipelined GET GET GET GET', bytes: get('/1') + get('/2') + get('/3') + get('/4') },
  { name: 'GET with a content-length body then GET', bytes: get('/1', 'content-length: 4\r\n') + 'abcd' + get('/2') },
  { name: 'Connection: close then a pipelined GET', bytes: get('/1', 'connection: close\r\n') + get('/2'), differs: answersBeforeClosing('1.1') },
  { name: 'HTTP/1.0 then a pipelined GET', bytes: 'GET /1 HTTP/1.0\r\n\r\n' + get('/2'), differs: answersBeforeClosing('1.0') },
  { name: 'CONNECT then a GET in the same packet', bytes: 'CONNECT other.example:443 HTTP/1.1\r\nhost: other.example:443\r\n\r\n' + get('/smuggled'), differs: connectServed },
  { name: 'CL.TE smuggling', bytes: post('content-length: 13\r\ntransfer-encoding: chunked\r\n', '0\r\n\r\nSMUGGLED') },
  { name: 'TE.CL smuggling', bytes: post('content-length: 3\r\ntransfer-encoding: chunked\r\n', '8\r\nSMUGGLED\r\n0\r\n\r\n') },
  { name: 'TE.TE smuggling (second TE obfuscated)', bytes: post('transfer-encoding: chunked\r\ntransfer-encoding: cow\r\n', '5\r\nhello\r\n0\r\n\r\n') },
  { name: 'TE.TE smuggling (TE and Transfer_Encoding)', bytes: post('transfer_encoding: chunked\r\ncontent-length: 5\r\n', 'hello') },
  { name: 'CL smuggling a GET through a body', bytes: post('content-length: 27\r\n', get('/smuggled').slice(0, 27)) + get('/next') },
  // Expect and Upgrade.
  { name: 'Expect: 100-continue with body', bytes: post('expect: 100-continue\r\ncontent-length: 5\r\n', 'hello') },
  { name: 'Expect: 100-Continue (case)', bytes: post('expect: 100-Continue\r\ncontent-length: 5\r\n', 'hello') },
  {
    name: 'Expect: something-else',
    bytes: post('expect: something-else\r\ncontent-length: 5\r\n', 'hello'),
    differs: {
      why: 'both answer 417; the wire server then closes instead of reading on (the body of a refused request is never parsed as a next request)',
      wire: (wire, node) => {
        expect(node).toEqual({ statuses: [417], requests: [], waitingForBody: false, open: true });
        expect(wire).toEqual({ statuses: [417], requests: [], waitingForBody: false, open: false });
      },
    },
  },
  { name: 'Expect: 100-continue in HTTP/1.0', bytes: 'POST /p HTTP/1.0\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\nhello' },
  { name: 'Upgrade without a handler, no body', bytes: get('/ws', 'upgrade: websocket\r\nconnection: upgrade\r\n') + get('/2'), differs: upgradeIgnored },
  { name: 'Upgrade with a body', bytes: post('upgrade: websocket\r\nconnection: upgrade\r\ncontent-length: 5\r\n', 'hello') + get('/2'), differs: upgradeIgnored },
  { name: 'h2c upgrade', bytes: get('/', 'upgrade: h2c\r\nconnection: upgrade, http2-settings\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n') },
  // Head size at the limit.
  { name: 'many small headers inside the limit', bytes: get('/', Array.from({ length: 600 }, (_, i) => `h${i}: v\r\n`).join('')) },
  { name: 'head just under the limit', bytes: get('/', `x-fill: ${'a'.repeat(MAX_HEADER_SIZE - 100)}\r\n`) },
  { name: 'head just over the limit', bytes: get('/', `x-fill: ${'a'.repeat(MAX_HEADER_SIZE + 10)}\r\n`) },
  { name: 'trailers over the limit', bytes: post('transfer-encoding: chunked\r\n', `0\r\nx-t: ${'a'.repeat(MAX_HEADER_SIZE + 10)}\r\n\r\n`) },
];

let pair: Pair;
let closePair: () => Promise<void>;
beforeAll(async () => {
  ({ pair, close: closePair } = await startPair());
});
afterAll(async () => {
  await closePair();
});

describe('WireConnection against node:http, byte for byte', () => {
  it('has a table of at least 40 raw cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  for (const testCase of CASES) {
    it(testCase.name, async () => {
      const bytes = Buffer.isBuffer(testCase.bytes) ? testCase.bytes : Buffer.from(testCase.bytes, 'latin1');
      const node = await exchange(pair.node.port, pair.node.sides, bytes);
      const wire = await exchange(pair.wire.port, pair.wire.sides, bytes);
      if (testCase.differs !== undefined) {
        testCase.differs.wire(wire, node);
        return;
      }
      expect(wire).toEqual(node);
    });
  }
});
