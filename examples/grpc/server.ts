/**
 * The example gRPC Greeter (greeter.proto) on @grpc/grpc-js, with the standard grpc.health.v1 Health
 * service. Run: `node examples/grpc/server.ts [port] [instance]` (default port 50051).
 *
 * Behaviours used by tests and the demo: the name "missing" answers NOT_FOUND; "slow" waits 2 s
 * before answering; request metadata `x-echo` comes back as response metadata and as a trailer.
 */
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const GREETER_PROTO = fileURLToPath(new URL('./greeter.proto', import.meta.url));

interface HelloRequest {
  name: string;
  count: number;
}
interface HelloReply {
  message: string;
  instance: string;
}

/** The generated Greeter package (client constructor and service definition). */
export function loadGreeter(): { Greeter: grpc.ServiceClientConstructor } {
  const definition = protoLoader.loadSync(GREETER_PROTO, { keepCase: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { meshlet: { examples: { Greeter: grpc.ServiceClientConstructor } } };
  return pkg.meshlet.examples;
}

export type ServingStatus = 'SERVING' | 'NOT_SERVING';

export interface GreeterServer {
  readonly port: number;
  /** What grpc.health.v1 Check answers from now on (for every service name). */
  setServing(status: ServingStatus): void;
  close(): Promise<void>;
}

function echoMetadata(call: { metadata: grpc.Metadata; sendMetadata(m: grpc.Metadata): void }): grpc.Metadata {
  const echo = call.metadata.get('x-echo')[0];
  const trailer = new grpc.Metadata();
  if (echo !== undefined) {
    const head = new grpc.Metadata();
    head.set('x-echo', String(echo));
    call.sendMetadata(head);
    trailer.set('x-echo-trailer', String(echo));
  }
  return trailer;
}

/** Starts the Greeter (and Health) on 127.0.0.1:`port` (0: any free port). */
export async function startGreeterServer(port = 0, instance = 'greeter-1', host = '127.0.0.1'): Promise<GreeterServer> {
  const { Greeter } = loadGreeter();
  let serving: ServingStatus = 'SERVING';
  const server = new grpc.Server();
  const reply = (message: string): HelloReply => ({ message, instance });
  server.addService(Greeter.service, {
    SayHello(call: grpc.ServerUnaryCall<HelloRequest, HelloReply>, callback: grpc.sendUnaryData<HelloReply>) {
      const trailer = echoMetadata(call);
      const { name } = call.request;
      if (name === 'missing') return callback({ code: grpc.status.NOT_FOUND, details: 'nobody is called "missing"' });
      const answer = () => callback(null, reply(`Hello, ${name}!`), trailer);
      if (name === 'slow') setTimeout(answer, 2000);
      else answer();
    },
    SayHellos(call: grpc.ServerWritableStream<HelloRequest, HelloReply>) {
      const trailer = echoMetadata(call);
      for (let i = 1; i <= call.request.count; i++) call.write(reply(`Hello #${i}, ${call.request.name}!`));
      call.end(trailer);
    },
    GreetAll(call: grpc.ServerReadableStream<HelloRequest, HelloReply>, callback: grpc.sendUnaryData<HelloReply>) {
      const names: string[] = [];
      call.on('data', (req: HelloRequest) => names.push(req.name));
      call.on('end', () => callback(null, reply(`Hello, ${names.join(' and ')}!`)));
    },
    Chat(call: grpc.ServerDuplexStream<HelloRequest, HelloReply>) {
      const trailer = echoMetadata(call);
      call.on('data', (req: HelloRequest) => call.write(reply(`Hello, ${req.name}!`)));
      call.on('end', () => call.end(trailer));
    },
  });
  const health = grpc.loadPackageDefinition(protoLoader.fromJSON(HEALTH_DESCRIPTOR as unknown as Parameters<typeof protoLoader.fromJSON>[0], { defaults: true })) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  server.addService(health.grpc.health.v1.Health.service, {
    Check(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<{ status: ServingStatus }>) {
      callback(null, { status: serving });
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port: bound,
    setServing: (status) => {
      serving = status;
    },
    close: () =>
      new Promise<void>((resolve) => {
        // Calls under way get a moment; then whatever remains is cut.
        const timer = setTimeout(() => server.forceShutdown(), 1000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

/**
 * grpc.health.v1 (grpc/grpc/doc/health-checking.md) as an inline protobufjs descriptor, so no .proto
 * file is needed: message HealthCheckRequest { string service = 1; }, message HealthCheckResponse
 * { ServingStatus status = 1; }, service Health { rpc Check(...) returns (...); }.
 */
const HEALTH_DESCRIPTOR = {
  nested: {
    grpc: {
      nested: {
        health: {
          nested: {
            v1: {
              nested: {
                HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
                HealthCheckResponse: {
                  fields: { status: { type: 'ServingStatus', id: 1 } },
                  nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
                },
                Health: { methods: { Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse' } } },
              },
            },
          },
        },
      },
    },
  },
};

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const port = Number(process.argv[2] ?? 50051);
  const instance = process.argv[3] ?? 'greeter-1';
  const server = await startGreeterServer(port, instance, process.env.GREETER_HOST ?? '127.0.0.1');
  console.log(`greeter (gRPC) ${instance} listening on 127.0.0.1:${server.port}`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
