/**
 * Edge TLS with certificates from the real Pebble ACME server (Debian package `pebble`), and from files.
 * The edge hands requests to an HTTP upstream whose endpoint is a test backend.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { createLogger, type Logger } from '../../sidecar/telemetry/logger.ts';
import { Pebble, freePort } from '../fixtures/pebble.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';
import { selfSignedCert } from '../helpers/self-signed.ts';
import { adminUrl, eventually, startSidecar, upstreamUrl } from '../helpers/sidecar.ts';

const DOMAIN = 'edge.meshlet.test';

interface Answer {
  status: number;
  body: string;
  serialNumber: string;
  reused: boolean;
  socket: TLSSocket;
}

/** One HTTPS GET to the edge, verifying the certificate against `ca` for DOMAIN (or `servername`). */
function get(port: number, ca: string, agent?: Agent, servername = DOMAIN): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/hello', servername, ca, agent: agent ?? false, headers: { host: servername, 'x-forwarded-proto': 'spoofed' } }, (res) => {
      const socket = res.socket as TLSSocket;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, serialNumber: socket.getPeerCertificate().serialNumber, reused: req.reusedSocket, socket }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A TLS handshake with the edge: resolves with the error when it is refused. */
function handshakeError(port: number, servername: string | undefined = DOMAIN): Promise<Error | undefined> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...(servername === undefined ? {} : { servername }) });
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (err) => resolve(err));
  });
}

/** Sends a plaintext HTTP request to a TLS port and collects whatever comes back until it closes. */
function plaintextReply(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(`GET /hello HTTP/1.1\r\nhost: ${DOMAIN}\r\n\r\n`));
    let data = '';
    socket.on('data', (d) => (data += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(data));
  });
}

async function admin(sidecar: Sidecar, method: string, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(`${adminUrl(sidecar)}${path}`, { method });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
}

describe('edge TLS with ACME (Pebble)', () => {
  let backend: TestBackend;
  let pebble: Pebble;
  let challengePort: number;
  const cleanup: Array<() => Promise<void> | void> = [];

  beforeAll(async () => {
    backend = await startBackend('web');
    challengePort = await freePort();
    pebble = new Pebble({ httpPort: challengePort });
    await pebble.start();
  }, 30_000);
  afterAll(async () => {
    await pebble?.close();
    await backend?.close();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-edge-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  async function edgeSidecar(storageDir: string, acme: Record<string, unknown> = {}, server = pebble, port = challengePort, log?: Logger): Promise<Sidecar> {
    const sidecar = await startSidecar({
      service: { name: 'web', port: 1 },
      upstreams: [{ name: 'site', endpoints: [{ address: '127.0.0.1', port: backend.port }] }],
      edge: {
        address: '127.0.0.1',
        port: 0,
        to: 'site',
        tls: { acme: { directoryUrl: server.directoryUrl, caFile: server.tlsCaFile, termsOfServiceAgreed: true, email: 'ops@meshlet.test', domains: [DOMAIN], storageDir, challenge: { address: '127.0.0.1', port }, ...acme } },
      },
    }, log ? { log } : {});
    cleanup.push(() => sidecar.stop());
    return sidecar;
  }

  it('obtains a certificate from Pebble, serves the upstream through the edge, keeps keys 0600 and reuses them after a restart', async () => {
    const storageDir = join(tempDir(), 'acme');
    const sidecar = await edgeSidecar(storageDir);
    await eventually('the edge certificate', () => sidecar.edge?.certificate !== undefined, 20_000);
    const root = await pebble.root();

    const answer = await get(sidecar.ports.edge!, root);
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ backend: 'web', url: '/hello' });
    // The edge states the scheme itself; a client's own forwarding headers are not trusted.
    expect(backend.lastHeaders?.['x-forwarded-proto']).toBe('https');
    const leaf = answer.socket.getPeerX509Certificate()!;
    expect(leaf.subjectAltName).toContain(`DNS:${DOMAIN}`);
    expect(leaf.issuer).toMatch(/Pebble/i);
    // Verification is real: a client trusting another root refuses the edge.
    await expect(get(sidecar.ports.edge!, selfSignedCert('localhost').cert)).rejects.toThrow(/certificate/i);

    for (const file of ['account.key.pem', 'certificate.key.pem']) expect(statSync(join(storageDir, file)).mode & 0o777).toBe(0o600);
    expect(statSync(storageDir).mode & 0o777).toBe(0o700);
    const status = await admin(sidecar, 'GET', '/edge');
    expect(status.body).toMatchObject({ mode: 'acme', state: 'valid', serving: true, domains: [DOMAIN], serialNumber: answer.serialNumber });
    const metrics = await (await request(`${adminUrl(sidecar)}/metrics`)).body.text();
    expect(metrics).toMatch(/meshlet_acme_orders_total\{result="ok"\} 1/);
    expect(metrics).toMatch(new RegExp(`meshlet_certificate_expiry_seconds\\{identity="edge:${DOMAIN.replace(/\./g, '\\.')}"\\} \\d`));

    // A restart serves the stored certificate at once, without an order (same serial, no new ACME call).
    await sidecar.stop();
    const again = await edgeSidecar(storageDir);
    expect(again.edge?.certificate?.serialNumber).toBe(sidecar.edge?.certificate?.serialNumber);
    const second = await get(again.ports.edge!, root);
    expect(second.status).toBe(200);
    expect(second.serialNumber).toBe(answer.serialNumber);
  }, 40_000);

  it('renewal swaps the certificate for new connections while a keep-alive connection stays open', async () => {
    const sidecar = await edgeSidecar(join(tempDir(), 'acme'));
    await eventually('the edge certificate', () => sidecar.edge?.certificate !== undefined, 20_000);
    const root = await pebble.root();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.push(() => agent.destroy());

    const first = await get(sidecar.ports.edge!, root, agent);
    expect(first.status).toBe(200);
    const renewed = await admin(sidecar, 'POST', '/edge/renew');
    expect(renewed.status).toBe(200);
    expect(renewed.body.serialNumber).not.toBe(first.serialNumber);

    // The open connection carries on with the certificate it was set up with.
    const onOpen = await get(sidecar.ports.edge!, root, agent);
    expect(onOpen.reused).toBe(true);
    expect(onOpen.socket).toBe(first.socket);
    expect(onOpen.status).toBe(200);
    expect(onOpen.serialNumber).toBe(first.serialNumber);
    // A new connection gets the new one.
    const fresh = await get(sidecar.ports.edge!, root);
    expect(fresh.status).toBe(200);
    expect(fresh.serialNumber).toBe(renewed.body.serialNumber);
  }, 40_000);

  it('with the ACME server down at start refuses TLS (never plaintext), serves the rest, and takes the certificate once the server is up', async () => {
    const downChallenge = await freePort();
    const later = new Pebble({ httpPort: downChallenge, port: await freePort() });
    cleanup.push(() => later.close());
    const lines: Array<{ msg: string; level: number; recovered?: boolean }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const sidecar = await edgeSidecar(join(tempDir(), 'acme'), { retryMin: '50ms', retryMax: '100ms' }, later, downChallenge, createLogger('info', sink));

    // The rest of the sidecar serves.
    const direct = await request(`${upstreamUrl(sidecar, 'site')}/hello`);
    expect(direct.statusCode).toBe(200);
    await direct.body.text();
    await eventually('three failed orders', async () => Number((await admin(sidecar, 'GET', '/edge')).body.failures) >= 3, 10_000);
    // Logged once for the state change, however many orders fail the same way.
    expect(lines.filter((l) => /cannot be obtained/.test(l.msg))).toHaveLength(1);
    const status = await admin(sidecar, 'GET', '/edge');
    expect(status.body).toMatchObject({ serving: false, state: 'failing' });
    expect(String(status.body.lastError)).toMatch(/ECONNREFUSED/);
    // No certificate: the handshake is refused, and a plaintext request gets no HTTP answer.
    expect(await handshakeError(sidecar.ports.edge!)).toBeInstanceOf(Error);
    expect(await handshakeError(sidecar.ports.edge!, undefined)).toBeInstanceOf(Error);
    expect(await plaintextReply(sidecar.ports.edge!)).not.toMatch(/^HTTP\//);
    const metrics = await (await request(`${adminUrl(sidecar)}/metrics`)).body.text();
    expect(metrics).toMatch(/meshlet_acme_orders_total\{result="failed"\} [1-9]/);

    await later.start();
    await eventually('the edge certificate after the ACME server came up', () => sidecar.edge?.certificate !== undefined, 20_000);
    const answer = await get(sidecar.ports.edge!, await later.root());
    expect(answer.status).toBe(200);
    expect((await admin(sidecar, 'GET', '/edge')).body).toMatchObject({ state: 'valid', serving: true });
    expect(lines.find((l) => /obtained from ACME/.test(l.msg))).toMatchObject({ recovered: true });
    // Private keys never reach the log.
    expect(lines.some((l) => JSON.stringify(l).includes('PRIVATE KEY'))).toBe(false);
  }, 40_000);

  it('the challenge listener answers only known tokens and redirects everything else to https', async () => {
    const sidecar = await edgeSidecar(join(tempDir(), 'acme'));
    await eventually('the edge certificate', () => sidecar.edge?.certificate !== undefined, 20_000);
    const plain = (path: string, host = DOMAIN) =>
      new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: sidecar.edge!.challengePort, path, headers: { host } }, (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, location: res.headers.location });
        });
        req.on('error', reject);
        req.end();
      });
    expect(await plain('/.well-known/acme-challenge/not-a-token')).toMatchObject({ status: 404 });
    expect(await plain('/shop?q=1')).toEqual({ status: 308, location: `https://${DOMAIN}:${sidecar.ports.edge}/shop?q=1` });
    // Only the certificate's domains are redirected (no open redirect).
    expect(await plain('/shop', 'elsewhere.example')).toMatchObject({ status: 404, location: undefined });
  }, 40_000);
});

describe('edge TLS from files', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  let backend: TestBackend;
  beforeAll(async () => {
    backend = await startBackend('web');
  });
  afterAll(async () => backend?.close());
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  function files(): { dir: string; certFile: string; keyFile: string; cert: string } {
    const dir = mkdtempSync(join(tmpdir(), 'meshlet-edge-files-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const { cert, key } = selfSignedCert('localhost');
    const certFile = join(dir, 'edge.crt');
    const keyFile = join(dir, 'edge.key');
    writeFileSync(certFile, cert);
    writeFileSync(keyFile, key, { mode: 0o600 });
    return { dir, certFile, keyFile, cert };
  }

  function start(tls: Record<string, unknown>): Promise<Sidecar> {
    return startSidecar({
      service: { name: 'web', port: 1 },
      upstreams: [{ name: 'site', endpoints: [{ address: '127.0.0.1', port: backend.port }] }],
      edge: { address: '127.0.0.1', port: 0, to: 'site', tls },
    }).then((sidecar) => {
      cleanup.push(() => sidecar.stop());
      return sidecar;
    });
  }

  it('serves the upstream with the certificate from certFile/keyFile and re-reads them on POST /edge/renew', async () => {
    const { certFile, keyFile, cert } = files();
    const sidecar = await start({ certFile, keyFile });
    const answer = await get(sidecar.ports.edge!, cert, undefined, 'localhost');
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ backend: 'web' });

    const next = selfSignedCert('localhost');
    writeFileSync(certFile, next.cert);
    writeFileSync(keyFile, next.key);
    const renewed = await admin(sidecar, 'POST', '/edge/renew');
    expect(renewed.status).toBe(200);
    const fresh = await get(sidecar.ports.edge!, next.cert, undefined, 'localhost');
    expect(fresh.status).toBe(200);
    expect(fresh.serialNumber).toBe(renewed.body.serialNumber);
  });

  it('refuses to start on unreadable, malformed or mismatched files, naming the field', async () => {
    const { dir, certFile, keyFile } = files();
    await expect(start({ certFile: join(dir, 'missing.crt'), keyFile })).rejects.toThrow(/edge\.tls\.certFile: cannot read .*missing\.crt: ENOENT/);
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate');
    await expect(start({ certFile: garbage, keyFile })).rejects.toThrow(/edge\.tls\.certFile: not a PEM certificate/);
    await expect(start({ certFile, keyFile: garbage })).rejects.toThrow(/edge\.tls\.keyFile: not a PEM private key/);
    const other = join(dir, 'other.key');
    writeFileSync(other, selfSignedCert('localhost').key);
    await expect(start({ certFile, keyFile: other })).rejects.toThrow(/edge\.tls\.keyFile: the private key does not belong to the certificate/);
  });
});
