/** A tiny HTTP service for the demo: answers with its instance name, so the demo shows balancing. */
import { createServer } from 'node:http';

export function startGreeter(instance: string, port: number): Promise<() => Promise<void>> {
  const server = createServer((req, res) => {
    const body = JSON.stringify({ service: 'greeter', instance, path: req.url, via: req.headers.via ?? null, forwardedFor: req.headers['x-forwarded-for'] ?? null });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () =>
      resolve(() => new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      })),
    );
  });
}

if (process.argv[1] === import.meta.filename) {
  const [instance = 'greeter-1', port = '8080'] = process.argv.slice(2);
  await startGreeter(instance, Number(port));
  process.stdout.write(`greeter ${instance} on 127.0.0.1:${port}\n`);
}
