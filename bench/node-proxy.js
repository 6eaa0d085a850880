// The "plain Node proxy" baseline: the http-proxy package as most Node projects use it, with a
// keep-alive agent to the backend (without one it opens a connection per request and looks far worse).
import http from 'node:http';
import httpProxy from 'http-proxy';

const [port, target] = process.argv.slice(2);
if (!port || !target) throw new Error('usage: node node-proxy.js PORT TARGET_URL');
const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
const proxy = httpProxy.createProxyServer({ target, agent, xfwd: true });
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) res.writeHead(502);
  res.end();
});
http.createServer((req, res) => proxy.web(req, res)).listen(Number(port), '127.0.0.1');
