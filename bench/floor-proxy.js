// The floor of a Node HTTP/1.1 proxy: the least JavaScript one can run per request with Node's own parts.
// llhttp (node:http's parser) on both sides, reading client sockets itself, a pool of keep-alive
// upstream sockets reading into one shared buffer, heads rebuilt as strings, the body passed through as
// it arrives. No features at all: no timeouts, retries, limits, metrics, header validation, or error
// answers beyond a 502. It is not a proxy anyone should run; it says how much of a gap to HAProxy is
// Node's and how much is Meshlet's.
//   node bench/floor-proxy.js PORT BACKEND_PORT [--tls-in CA,CERT,KEY] [--tls-out CA,CERT,KEY,SERVERNAME]
// --tls-in serves mTLS (a client certificate signed by CA is required); --tls-out speaks mTLS to the
// backend (its certificate verified against CA for SERVERNAME, CERT presented): two floors, one with
// each, are the floor of a sidecar pair, beside the HAProxy TLS pair and Meshlet's two hops.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common');
const { values: options, positionals } = parseArgs({ allowPositionals: true, options: { 'tls-in': { type: 'string' }, 'tls-out': { type: 'string' } } });
const [port, backendPort] = positionals.map(Number);
if (!port || !backendPort) throw new Error('usage: node floor-proxy.js PORT BACKEND_PORT [--tls-in CA,CERT,KEY] [--tls-out CA,CERT,KEY,SERVERNAME]');
/** CA, certificate and key files (and, for --tls-out, the name the backend's certificate must carry). */
function tlsFiles(spec) {
  const [ca, cert, key, servername] = spec.split(',');
  return { ca: readFileSync(ca), cert: readFileSync(cert), key: readFileSync(key), ...(servername ? { servername } : {}) };
}
const tlsIn = options['tls-in'] ? tlsFiles(options['tls-in']) : undefined;
const tlsOut = options['tls-out'] ? { ...tlsFiles(options['tls-out']), rejectUnauthorized: true } : undefined;
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection', 'te', 'trailer']);
const MAX_UPSTREAM = 256;
const shared = Buffer.allocUnsafe(64 * 1024);
const idle = [];
const queue = [];
let open = 0;

function headLines(raw) {
  let lines = '';
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i].toLowerCase())) lines += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return lines;
}

/** One upstream connection; `client` is the client connection whose request it carries. */
function connectUpstream() {
  const up = { client: null, chunked: false, keepAlive: true, socket: null, parser: new HTTPParser() };
  up.parser.initialize(HTTPParser.RESPONSE, {}, 16384, HTTPParser.kLenientNone);
  up.parser[HTTPParser.kOnHeadersComplete] = (_maj, _min, raw, _m, _u, status, message, _upg, keepAlive) => {
    up.keepAlive = keepAlive;
    up.chunked = raw.some((v, i) => i % 2 === 0 && v.toLowerCase() === 'transfer-encoding');
    const c = up.client;
    c.socket.write(`HTTP/1.1 ${status} ${message}\r\n${headLines(raw)}${up.chunked ? 'transfer-encoding: chunked\r\n' : ''}${c.keepAlive ? '' : 'connection: close\r\n'}\r\n`, 'latin1');
    return c.method === 'HEAD' ? 1 : 0;
  };
  up.parser[HTTPParser.kOnBody] = (chunk) => {
    const s = up.client.socket;
    if (up.chunked) s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    s.write(chunk);
    if (up.chunked) s.write('\r\n', 'latin1');
  };
  up.parser[HTTPParser.kOnMessageComplete] = () => {
    const c = up.client;
    up.client = null;
    if (up.chunked) c.socket.write('0\r\n\r\n', 'latin1');
    if (!c.keepAlive) c.socket.end();
    if (up.keepAlive) release(up);
    else up.socket.destroy();
  };
  const connectOptions = {
    port: backendPort,
    host: '127.0.0.1',
    noDelay: true,
    onread: { buffer: shared, callback: (n) => void up.parser.execute(shared.subarray(0, n)) },
  };
  up.socket = tlsOut ? tls.connect({ ...connectOptions, ...tlsOut }) : net.connect(connectOptions);
  up.socket.on('error', () => {});
  up.socket.on('close', () => {
    open--;
    const at = idle.indexOf(up);
    if (at !== -1) idle.splice(at, 1);
    if (up.client) up.client.socket.destroy();
  });
  open++;
  return up;
}

function release(up) {
  const next = queue.shift();
  if (next) send(up, next);
  else idle.push(up);
}

function send(up, client) {
  up.client = client;
  up.socket.write(client.head, 'latin1');
}

function dispatch(client) {
  const up = idle.pop();
  if (up) send(up, client);
  else if (open < MAX_UPSTREAM) send(connectUpstream(), client);
  else queue.push(client);
}

function serve(socket) {
  const client = { socket, head: '', method: 'GET', keepAlive: true };
  const parser = new HTTPParser();
  parser.initialize(HTTPParser.REQUEST, {}, 16384, HTTPParser.kLenientNone);
  parser[HTTPParser.kOnHeadersComplete] = (_maj, _min, raw, method, url, _s, _m, _upg, keepAlive) => {
    client.method = methods[method];
    client.keepAlive = keepAlive;
    client.head = `${client.method} ${url} HTTP/1.1\r\n${headLines(raw)}x-forwarded-for: ${socket.remoteAddress}\r\n\r\n`;
    return 0;
  };
  // Bench requests have no body: the request goes upstream once its head is complete.
  parser[HTTPParser.kOnMessageComplete] = () => dispatch(client);
  // The parser reads the socket itself (as node:http's server and Meshlet do): no 'data' event per read.
  parser[HTTPParser.kOnExecute] = (ret) => {
    if (ret instanceof Error) socket.destroy();
  };
  // A TLS client may send its request with the end of the handshake: what the socket already read goes first.
  const early = socket.readableLength > 0 ? socket.read() : null;
  if (early) parser.execute(early);
  parser.consume(socket._handle);
  // Flowing, so that the end of the client's stream ('end') still closes the socket.
  socket.resume();
  socket.on('error', () => {});
  socket.on('close', () => {
    parser.unconsume();
    parser.free();
  });
}

const server = tlsIn
  ? tls.createServer({ ...tlsIn, requestCert: true, rejectUnauthorized: true, noDelay: true }, serve).on('tlsClientError', () => {})
  : net.createServer({ noDelay: true }, serve);
server.listen(port, '127.0.0.1');
