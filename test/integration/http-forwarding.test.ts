/** HTTP/1.1 message forwarding details: request-target forms, old clients, repeated and hop-by-hop headers. */
import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { closeServer, startBackend, type TestBackend } from '../helpers/backend.ts';
import { rawExchange } from '../helpers/raw.ts';
import { startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

describe('HTTP/1.1 forwarding details', () => {
  let b: TestBackend;
  let sidecar: Sidecar;
  let port: number;

  beforeAll(async () => {
    b = await startBackend('b', (req, res) => {
      req.resume();
      if (req.url === '/cookies') {
        res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
        res.setHeader('connection', 'x-private');
        res.setHeader('x-private', 'hop');
        res.setHeader('keep-alive', 'timeout=5');
        res.end('ok');
        return;
      }
      if (req.url === '/relayed') {
        // node:http adds `Connection: keep-alive` and `Keep-Alive: timeout=5`: hop-by-hop, never relayed.
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.setHeader('Via', '1.0 app-proxy');
        res.setHeader('X-Mixed-Case', 'Value');
        res.end('relayed');
        return;
      }
      const body = JSON.stringify({ url: req.url, host: req.headers.host, xfh: req.headers['x-forwarded-host'] });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    sidecar = await startSidecar({ service: { name: 'client', port: 1 }, upstreams: [{ name: 'b', endpoints: [{ address: '127.0.0.1', port: b.port }] }] });
    port = sidecar.ports.upstreams.b!;
  });
  afterAll(async () => {
    await sidecar?.stop();
    await b?.close();
  });

  const bodyOf = (reply: string) => reply.slice(reply.indexOf('\r\n\r\n') + 4);

  it('turns an absolute-form target into origin-form with Host from the target', async () => {
    const reply = await rawExchange(port, 'GET http://greeter.local:8080/abs?q=1 HTTP/1.1\r\nHost: ignored\r\nConnection: close\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(bodyOf(reply))).toEqual({ url: '/abs?q=1', host: 'greeter.local:8080', xfh: 'greeter.local:8080' });
  });

  it('refuses an asterisk-form target it cannot forward with 400, not a 502 blaming the upstream', async () => {
    const reply = await rawExchange(port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply).toContain('x-meshlet-error: bad_request');
  });

  it('serves HTTP/1.0 clients and closes after the response', async () => {
    const reply = await rawExchange(port, 'GET /old HTTP/1.0\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    // No Host from the client: the upstream (an HTTP/1.1 server must refuse a request without one) gets the endpoint's.
    expect(JSON.parse(bodyOf(reply))).toMatchObject({ url: '/old', host: `127.0.0.1:${b.port}` });
  });

  it('keeps repeated response headers and drops hop-by-hop ones from the response', async () => {
    const res = await request(`${upstreamUrl(sidecar, 'b')}/cookies`);
    expect(res.statusCode).toBe(200);
    expect(res.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
    expect(res.headers['x-private']).toBeUndefined();
    expect(res.headers.via).toBe('1.1 meshlet');
    expect(await res.body.text()).toBe('ok');
  });

  it('relays a response head no layer touched as received: repeated fields kept, hop-by-hop dropped, our Via joined', async () => {
    const reply = await rawExchange(port, 'GET /relayed HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const head = reply.slice(0, reply.indexOf('\r\n\r\n'));
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(head).toContain('\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n');
    expect(head).toContain('\r\nX-Mixed-Case: Value\r\n');
    expect(head).toContain('\r\nvia: 1.0 app-proxy, 1.1 meshlet');
    expect(head.match(/^connection:/gim)).toEqual(['connection:']);
    expect(head).toContain('\r\nconnection: close');
    expect(head).not.toMatch(/keep-alive/i);
    expect(bodyOf(reply)).toBe('relayed');
  });

  it('reaches IPv6 endpoints over HTTP and TCP', async () => {
    const v6 = createServer((req, res) => res.end(`v6 ${req.socket.localAddress}`));
    await new Promise<void>((resolve) => v6.listen(0, '::1', resolve));
    const v6port = (v6.address() as { port: number }).port;
    const s6 = await startSidecar({
      service: { name: 'client', port: 1 },
      upstreams: [
        { name: 'web', endpoints: [{ address: '::1', port: v6port }] },
        { name: 'raw', protocol: 'tcp', endpoints: [{ address: '::1', port: v6port }] },
      ],
    });
    try {
      for (const upstream of ['web', 'raw']) {
        const res = await request(`${upstreamUrl(s6, upstream)}/`);
        expect(await res.body.text(), upstream).toBe('v6 ::1');
      }
    } finally {
      await s6.stop();
      await closeServer(v6);
    }
  });

  it('answers HEAD without a body', async () => {
    const reply = await rawExchange(port, 'HEAD /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(reply).toMatch(/^HTTP\/1\.1 200 /);
    expect(bodyOf(reply)).toBe('');
  });
});
