/** `meshlet inject` and `meshlet webhook`: the injector's command line. */
import { readFile, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { createLogger } from '../sidecar/telemetry/logger.ts';
import { injectCompose } from './compose.ts';
import { injectManifests } from './kubernetes.ts';
import { startWebhook } from './webhook.ts';

const INJECT_USAGE = 'usage: meshlet inject (--k8s FILE | --compose FILE) [--image IMAGE] [--output FILE]   (FILE "-" is stdin)';

async function readInput(path: string): Promise<string> {
  if (path !== '-') return readFile(path, 'utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Rewrites a Kubernetes manifest or compose file with sidecars added; prints to stdout or --output. */
export async function injectCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { k8s: { type: 'string' }, compose: { type: 'string' }, image: { type: 'string' }, output: { type: 'string', short: 'o' } } });
  const source = values.k8s ?? values.compose;
  if (!source || (values.k8s && values.compose)) {
    process.stderr.write(`${INJECT_USAGE}\n`);
    return 2;
  }
  const text = await readInput(source);
  const options = values.image ? { image: values.image } : {};
  const result = values.k8s ? injectManifests(text, options) : injectCompose(text, options);
  if (values.output) await writeFile(values.output, result.yaml);
  else process.stdout.write(result.yaml);
  process.stderr.write(result.injected.length > 0 ? `injected: ${result.injected.join(', ')}\n` : 'nothing asks for injection (annotate with meshlet.io/inject: "true")\n');
  return 0;
}

/** Runs the admission webhook until SIGTERM. */
export async function webhookCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { port: { type: 'string', default: '8443' }, address: { type: 'string', default: '0.0.0.0' }, cert: { type: 'string' }, key: { type: 'string' }, image: { type: 'string' } },
  });
  if (!values.cert || !values.key) {
    process.stderr.write('usage: meshlet webhook --cert FILE --key FILE [--port 8443] [--address 0.0.0.0] [--image IMAGE]\n');
    return 2;
  }
  const log = createLogger('info');
  const [cert, key] = await Promise.all([readFile(values.cert), readFile(values.key)]);
  const { server, port } = await startWebhook(Number(values.port), values.address, { cert, key, log, ...(values.image ? { image: values.image } : {}) });
  log.info({ port }, 'admission webhook serving POST /mutate');
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
