import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { connect as h2connect } from 'node:http2';
import type { Sidecar } from '../../sidecar/sidecar.ts';
import { loadGreeter, startGreeterServer, type GreeterServer } from '../../examples/grpc/server.ts';
import { startBackend } from '../helpers/backend.ts';
import { startSidecar, upstreamUrl, type RawConfig } from '../helpers/sidecar.ts';

const { Greeter } = loadGreeter();

interface Reply {
  message: string;
  instance: string;
}

type GreeterClient = grpc.Client & Record<string, (...args: never[]) => unknown>;

describe('gRPC and HTTP/2 through sidecars (real @grpc/grpc-js peers)', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });

  async function greeter(instance = 'greeter-1'): Promise<GreeterServer> {
    const server = await startGreeterServer(0, instance);
    cleanup.push(() => server.close());
    return server;
  }

  async function sidecar(raw: RawConfig): Promise<Sidecar> {
    const s = await startSidecar(raw);
    cleanup.push(() => s.stop());
    return s;
  }

  /** greeter app <- inbound sidecar (grpc) <- outbound sidecar (grpc upstream) <- client. */
  async function mesh(upstreamExtra: RawConfig = {}): Promise<{ client: GreeterClient; app: GreeterServer; inbound: Sidecar; outbound: Sidecar }> {
    const app = await greeter();
    const inbound = await sidecar({ service: { name: 'greeter', port: app.port }, inbound: { protocol: 'grpc' } });
    const outbound = await sidecar({
      service: { name: 'frontend', port: 1 },
      upstreams: [{ name: 'greeter', protocol: 'grpc', endpoints: [{ address: '127.0.0.1', port: inbound.ports.inbound }], ...upstreamExtra }],
    });
    return { client: grpcClient(outbound), app, inbound, outbound };
  }

  function grpcClient(outbound: Sidecar, upstream = 'greeter'): GreeterClient {
    const client = new Greeter(`127.0.0.1:${outbound.ports.upstreams[upstream]}`, grpc.credentials.createInsecure()) as unknown as GreeterClient;
    cleanup.push(() => client.close());
    return client;
  }

  function unary(client: GreeterClient, name: string, options: { metadata?: grpc.Metadata; deadlineMs?: number } = {}) {
    return new Promise<{ err: grpc.ServiceError | null; reply?: Reply; headers?: grpc.Metadata; status?: grpc.StatusObject }>((resolve) => {
      let headers: grpc.Metadata | undefined;
      let status: grpc.StatusObject | undefined;
      let result: { err: grpc.ServiceError | null; reply?: Reply } | undefined;
      const done = () => {
        if (result && status) resolve({ ...result, headers, status });
      };
      const callOptions: grpc.CallOptions = options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {};
      const call = (client.SayHello as unknown as (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Reply) => void) => grpc.ClientUnaryCall)(
        { name },
        options.metadata ?? new grpc.Metadata(),
        callOptions,
        (err, reply) => {
          result = { err, reply };
          done();
        },
      );
      call.on('metadata', (m: grpc.Metadata) => (headers = m));
      call.on('status', (s: grpc.StatusObject) => {
        status = s;
        done();
      });
    });
  }

  it('unary call: reply, request metadata echoed back in headers and trailers', async () => {
    const { client } = await mesh();
    const metadata = new grpc.Metadata();
    metadata.set('x-echo', 'ping');
    const { err, reply, headers, status } = await unary(client, 'Ada', { metadata });
    expect(err).toBeNull();
    expect(reply).toEqual({ message: 'Hello, Ada!', instance: 'greeter-1' });
    expect(headers?.get('x-echo')).toEqual(['ping']);
    expect(status?.code).toBe(grpc.status.OK);
    expect(status?.metadata.get('x-echo-trailer')).toEqual(['ping']);
  });
});
