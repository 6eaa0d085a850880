/** Config files for the backend and every proxy under test, all on 127.0.0.1, written into the run directory. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './procs.ts';

export const SMALL_PATH = '/small';
export const LARGE_PATH = '/1m';
export const LARGE_BYTES = 1024 * 1024;

function nginxSkeleton(dir: string, name: string, http: string): string {
  return `# ${name}: one process, no disk logging (the bench measures the network path)
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 40000;
pid ${dir}/${name}.pid;
error_log ${dir}/${name}.error.log warn;
events { worker_connections 20000; multi_accept on; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  client_body_temp_path ${dir}/tmp-${name}-body;
  proxy_temp_path ${dir}/tmp-${name}-proxy;
  fastcgi_temp_path ${dir}/tmp-${name}-fcgi;
  uwsgi_temp_path ${dir}/tmp-${name}-uwsgi;
  scgi_temp_path ${dir}/tmp-${name}-scgi;
${http}
}
`;
}

/**
 * The static backend: a small text response and a 1 MiB file. With `h2Port`, the same server also
 * speaks cleartext HTTP/2 with prior knowledge (h2c) there: `listen ... http2` without ssl, as nginx
 * 1.9.5-1.24 spell it (1.25.1+ still accepts it, with a deprecation warning in favour of `http2 on`).
 */
export function nginxBackend(dir: string, port: number, h2Port?: number): string {
  const www = join(dir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, LARGE_PATH.slice(1)), Buffer.alloc(LARGE_BYTES, 'x'));
  const file = join(dir, 'nginx-backend.conf');
  writeFileSync(
    file,
    nginxSkeleton(
      dir,
      'nginx-backend',
      `  sendfile on;
  server {
    listen 127.0.0.1:${port} backlog=4096;${h2Port === undefined ? '' : `\n    listen 127.0.0.1:${h2Port} http2 backlog=4096;`}
    location = ${SMALL_PATH} { default_type text/plain; return 200 "hello from the bench backend\\n"; }
    location / { root ${www}; }
  }`,
    ),
  );
  return file;
}

/** nginx as a reverse proxy with a keep-alive upstream pool. */
export function nginxProxy(dir: string, port: number, backend: number): string {
  const file = join(dir, 'nginx-proxy.conf');
  writeFileSync(
    file,
    nginxSkeleton(
      dir,
      'nginx-proxy',
      `  upstream backend { server 127.0.0.1:${backend}; keepalive 128; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_max_temp_file_size 0;
    }
  }`,
    ),
  );
  return file;
}

// maxconn sizes HAProxy's descriptor needs (about 2 per connection): stay under a 20000 ulimit -n.
const HAPROXY_GLOBAL = `global
  nbthread 1
  maxconn 9500
  tune.ssl.default-dh-param 2048
defaults
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  maxconn 9500
`;

/** The keep-alive HTTP proxy every HAProxy one-hop row runs: http mode, server connections reused. */
function httpProxySection(port: number, backend: number): string {
  return `frontend http_in
  mode http
  option http-keep-alive
  bind 127.0.0.1:${port}
  default_backend http_out
backend http_out
  mode http
  http-reuse always
  server s1 127.0.0.1:${backend}
`;
}

/**
 * HAProxy L7 (http mode, connection reuse) and L4 (tcp mode) frontends in one process; with `h2`, an
 * HTTP/2 frontend too: h2c with prior knowledge in (`proto h2` on the bind) and h2c out (`proto h2`
 * on the server), so streams are multiplexed on both sides as in Meshlet's `http2` upstream.
 */
export function haproxy(dir: string, httpPort: number, tcpPort: number, backend: number, h2?: { port: number; backend: number }): string {
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(
    file,
    `${HAPROXY_GLOBAL}
${httpProxySection(httpPort, backend)}frontend tcp_in
  mode tcp
  bind 127.0.0.1:${tcpPort}
  default_backend tcp_out
backend tcp_out
  mode tcp
  server s1 127.0.0.1:${backend}
${
  h2
    ? `frontend h2_in
  mode http
  bind 127.0.0.1:${h2.port} proto h2
  default_backend h2_out
backend h2_out
  mode http
  http-reuse always
  server s1 127.0.0.1:${h2.backend} proto h2
`
    : ''
}`,
  );
  return file;
}

/**
 * HAProxy with one thread per core and nothing else: the like-for-like reference for Meshlet's
 * `workers: auto` row (both unpinned, sharing the machine with the load generator and the backend).
 */
export function haproxyThreads(dir: string, httpPort: number, backend: number, threads: number): string {
  const file = join(dir, 'haproxy-threads.cfg');
  writeFileSync(
    file,
    `${HAPROXY_GLOBAL.replace('nbthread 1', `nbthread ${threads}`)}
${httpProxySection(httpPort, backend)}`,
  );
  return file;
}

/**
 * The Node floor pair, node arguments for each side: an outbound bench/floor-proxy.js (plain in, mTLS with
 * the client certificate out to `inPort`) and an inbound one (mTLS in, plain out to `backend`), with the
 * HAProxy pair's certificates.
 */
export function floorPairArgs(certs: Certs, outPort: number, inPort: number, backend: number): { out: string[]; in: string[] } {
  const script = join(import.meta.dirname, '..', 'floor-proxy.js');
  return {
    out: [script, String(outPort), String(inPort), '--tls-out', [certs.ca, certs.clientCert, certs.clientKey, 'backend'].join(',')],
    in: [script, String(inPort), String(backend), '--tls-in', [certs.ca, certs.serverCert, certs.serverKey].join(',')],
  };
}

/**
 * The mTLS reference: an outbound HAProxy (plain in, TLS with a client certificate out) and an inbound one.
 * With `h2`, HTTP/2 all the way: h2c in, h2 by ALPN between the pair, h2c to the backend (`name` keeps
 * the two pairs' files apart).
 */
export function haproxyTlsPair(dir: string, certs: Certs, outPort: number, inPort: number, backend: number, h2 = false, name = 'haproxy-tls'): { out: string; in: string } {
  const out = join(dir, `${name}-out.cfg`);
  const inn = join(dir, `${name}-in.cfg`);
  const bindH2 = h2 ? ' proto h2' : '';
  const alpn = h2 ? ' alpn h2' : '';
  const serverH2 = h2 ? ' proto h2' : '';
  writeFileSync(
    out,
    `${HAPROXY_GLOBAL}
frontend app_in
  mode http
  option http-keep-alive
  bind 127.0.0.1:${outPort}${bindH2}
  default_backend peer
backend peer
  mode http
  http-reuse always
  server s1 127.0.0.1:${inPort} ssl verify required ca-file ${certs.ca} crt ${certs.clientBundle} sni str(backend) verifyhost backend${alpn}
`,
  );
  writeFileSync(
    inn,
    `${HAPROXY_GLOBAL}
frontend peer_in
  mode http
  option http-keep-alive
  bind 127.0.0.1:${inPort} ssl crt ${certs.serverBundle} ca-file ${certs.ca} verify required${alpn}
  default_backend app
backend app
  mode http
  http-reuse always
  server s1 127.0.0.1:${backend}${serverH2}
`,
  );
  return { out, in: inn };
}

export interface Certs {
  readonly ca: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** cert + key in one PEM, as HAProxy wants. */
  readonly serverBundle: string;
  readonly clientBundle: string;
}

/** A throwaway CA with a server (`backend`) and a client (`bench-client`) leaf, ECDSA P-256 like Meshlet's default. */
export async function makeCerts(dir: string): Promise<Certs> {
  const p = (name: string) => join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', p('ca.key'), '-out', p('ca.pem'), '-subj', '/CN=meshlet-bench-ca', '-days', '2']);
  for (const [leaf, cn, san] of [
    ['server', 'backend', 'DNS:backend,IP:127.0.0.1'],
    ['client', 'bench-client', 'DNS:bench-client'],
  ] as const) {
    await run('openssl', ['req', ...ec, '-keyout', p(`${leaf}.key`), '-out', p(`${leaf}.csr`), '-subj', `/CN=${cn}`]);
    writeFileSync(p(`${leaf}.ext`), `subjectAltName=${san}\n`);
    await run('openssl', ['x509', '-req', '-in', p(`${leaf}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p(`${leaf}.pem`), '-days', '2', '-extfile', p(`${leaf}.ext`)]);
  }
  const { readFileSync } = await import('node:fs');
  const bundle = (leaf: string) => {
    writeFileSync(p(`${leaf}.bundle.pem`), readFileSync(p(`${leaf}.pem`), 'utf8') + readFileSync(p(`${leaf}.key`), 'utf8'), { mode: 0o600 });
    return p(`${leaf}.bundle.pem`);
  };
  return {
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    serverBundle: bundle('server'),
    clientBundle: bundle('client'),
  };
}

/** A Meshlet config file (JSON is accepted like YAML); logs kept to warnings, no access log, like the others. */
export function meshletConfig(dir: string, name: string, config: Record<string, unknown>): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ ...config, logging: { level: 'warn', accessLog: false } }, null, 2));
  return file;
}

/** A local CA made by a checkout's `meshlet ca init` (`main`: its sidecar/main.ts), as a config's `security`. */
export async function meshletCa(main: string, caDir: string): Promise<Record<string, unknown>> {
  await run(process.execPath, [main, 'ca', 'init', '--dir', caDir], 60_000);
  return { mtls: true, ca: { dir: caDir } };
}

/** Ports of a Meshlet pair: the outbound sidecar's upstream listener, inbound and admin; the inbound sidecar's inbound and admin. */
export interface MeshletPairPorts {
  readonly outbound: number;
  readonly outboundInbound: number;
  readonly outboundAdmin: number;
  readonly inbound: number;
  readonly inboundAdmin: number;
  readonly backend: number;
}

/**
 * The configs of a Meshlet pair as the bench runs it: the outbound sidecar of `bench-app` with an
 * upstream `backend` at the inbound sidecar of `backend`, which serves the backend; `security` on both
 * (mTLS between them) when given.
 */
export function meshletPairConfigs(dir: string, names: { readonly outbound: string; readonly inbound: string }, port: MeshletPairPorts, security?: Record<string, unknown>): { outbound: string; inbound: string } {
  const secured = security ? { security } : {};
  const inbound = meshletConfig(dir, names.inbound, {
    service: { name: 'backend', port: port.backend },
    inbound: { address: '127.0.0.1', port: port.inbound },
    admin: { port: port.inboundAdmin },
    ...secured,
  });
  const outbound = meshletConfig(dir, names.outbound, {
    service: { name: 'bench-app', port: port.backend },
    inbound: { address: '127.0.0.1', port: port.outboundInbound },
    admin: { port: port.outboundAdmin },
    upstreams: [{ name: 'backend', port: port.outbound, protocol: 'http', endpoints: [{ address: '127.0.0.1', port: port.inbound }] }],
    ...secured,
  });
  return { outbound, inbound };
}
