/**
 * The mutating admission webhook: the Kubernetes API server POSTs an AdmissionReview for each new Pod;
 * we answer with a JSON Patch adding the sidecar when the Pod asks for it. A Pod whose annotations are
 * wrong is refused with a message naming the annotation, rather than started without its sidecar.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../sidecar/telemetry/logger.ts';
import { listen } from '../sidecar/listeners/listen.ts';
import { podPatch, type KubeOptions } from './kubernetes.ts';
import { InjectionError } from './spec.ts';

/** AdmissionReview bodies are small; anything bigger is not from the API server. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

type Json = Record<string, any>;

/** Builds the AdmissionReview response for a request review. */
export function review(request: Json, options: KubeOptions = {}): Json {
  const req = request?.request;
  if (request?.kind !== 'AdmissionReview' || !req?.uid) throw new InjectionError('body is not an AdmissionReview with request.uid');
  const base = { apiVersion: request.apiVersion ?? 'admission.k8s.io/v1', kind: 'AdmissionReview' };
  if (req.kind?.kind !== 'Pod' || req.operation !== 'CREATE') return { ...base, response: { uid: req.uid, allowed: true } };
  try {
    const patch = podPatch(req.object ?? {}, req.namespace ?? req.object?.metadata?.namespace ?? 'default', options);
    if (patch.length === 0) return { ...base, response: { uid: req.uid, allowed: true } };
    return { ...base, response: { uid: req.uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') } };
  } catch (err) {
    if (!(err instanceof InjectionError)) throw err;
    return { ...base, response: { uid: req.uid, allowed: false, status: { code: 400, message: `meshlet injection: ${err.message}` } } };
  }
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new InjectionError(`request body larger than ${MAX_BODY_BYTES} bytes`));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: Json): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export interface WebhookOptions extends KubeOptions {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly log: Logger;
}

/** Starts the webhook's HTTPS server (`POST /mutate`, `GET /healthz`); resolves with the server and port. */
export async function startWebhook(port: number, address: string, options: WebhookOptions): Promise<{ server: Server; port: number }> {
  const server = createServer({ cert: options.cert, key: options.key }, (req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') return send(res, 200, { ok: true });
    if (req.method !== 'POST' || req.url?.split('?')[0] !== '/mutate') return send(res, 404, { error: 'only POST /mutate and GET /healthz' });
    readBody(req)
      .then((text) => {
        let body: Json;
        try {
          body = JSON.parse(text) as Json;
        } catch {
          throw new InjectionError('body is not JSON');
        }
        send(res, 200, review(body, options));
      })
      .catch((err: unknown) => {
        const known = err instanceof InjectionError;
        options.log[known ? 'warn' : 'error']({ err }, 'admission review failed');
        if (!res.headersSent) send(res, known ? 400 : 500, { error: (err as Error).message });
      });
  });
  const bound = await listen(server, port, address);
  return { server, port: bound };
}
