// The floor of a Node HTTP/1.1 proxy: the least JavaScript one can run per request with Node's own parts.
// llhttp (node:http's parser) on both sides, reading client sockets itself, a pool of keep-alive
// upstream sockets reading into one shared buffer, heads rebuilt as strings, the body passed through as
// it arrives. No features at all: no timeouts, retries, limits, metrics, header validation, or error
// answers beyond a 502. It is not a proxy anyone should run; it says how much of a gap to HAProxy is
// Node's and how much is Meshlet's.
//   node bench/floor-proxy.js PORT BACKEND_PORT
import net from 'node:net';
import { createRequire } from 'node:module';

const { HTTPParser, methods } = createRequire(import.meta.url)('_http_common');
const [port, backendPort] = process.argv.slice(2).map(Number);
if (!port || !backendPort) throw new Error('usage: node floor-proxy.js PORT BACKEND_PORT');
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
  up.socket = net.connect({
    port: backendPort,
    host: '127.0.0.1',
    noDelay: true,
    onread: { buffer: shared, callback: (n) => void up.parser.execute(shared.subarray(0, n)) },
  });
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

net.createServer({ noDelay: true }, (socket) => {
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
  parser.consume(socket._handle);
  // Flowing, so that the end of the client's stream ('end') still closes the socket.
  socket.resume();
  socket.on('error', () => {});
  socket.on('close', () => {
    parser.unconsume();
    parser.free();
  });
}).listen(port, '127.0.0.1');
