/**
 * Large bodies stream through the sidecar both ways without being buffered. The sidecar runs as a real
 * CLI process so its memory can be read from /proc: its peak resident set (VmHWM) may grow by far less
 * than the body size. Each direction is also gated: the sender holds back the rest of the body until
 * the receiver has seen the first megabyte, so a proxy that buffered the whole body would deadlock.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { procMemory, startCliSidecar, stopCli, type CliProcess } from '../helpers/cli.ts';
import { closeServer } from '../helpers/backend.ts';
import { eventually } from '../helpers/sidecar.ts';

const MiB = 1024 * 1024;
const BODY_BYTES = 256 * MiB;
const CHUNK = 64 * 1024;
/**
 * Allowed growth of the sidecar's peak RSS while moving 2 x 256 MiB. Buffering one body would need at
 * least 256 MiB. Streaming is flat but not free: V8 lets released chunk buffers pile up to roughly
 * 100 MiB before it collects them (measured: the same ~90-100 MiB plateau for 256 and 512 MiB bodies).
 */
const MAX_RSS_GROWTH = 160 * MiB;

/** Deterministic chunk `i` of a generated body (varies per chunk so reordering or loss changes the hash). */
function chunkAt(i: number, template: Buffer): Buffer {
  const chunk = Buffer.from(template);
  chunk.writeUInt32BE(i, 0);
  return chunk;
}

/** Yields `total` bytes; after the first MiB waits for `gate()` so the receiver must see bytes first. */
async function* generate(total: number, gate: () => Promise<void>, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  const template = Buffer.alloc(CHUNK, 'meshlet streaming ');
  for (let sent = 0, i = 0; sent < total; sent += CHUNK, i++) {
    if (sent === MiB) await gate();
    const chunk = chunkAt(i, template);
    hash.update(chunk);
    yield chunk;
  }
}

describe('streaming a large body through a CLI sidecar', () => {
  let dir: string;
  let backend: Server;
  let sidecar: CliProcess & { ports: { upstreams: Readonly<Record<string, number>> } };
  const dispatcher = new Agent();
  /** Bytes the backend has received of the current upload. */
  let uploadReceived = 0;
  /** Bytes the client has received of the current download. */
  let downloadReceived = 0;
  /** Hash of what the backend sent for the last download, set when it finished sending. */
  let downloadMd5: string | undefined;

  beforeAll(async () => {
    backend = createServer((req, res) => {
      if (req.url === '/upload') {
        uploadReceived = 0;
        const hash = createHash('md5');
        req.on('data', (c: Buffer) => {
          uploadReceived += c.length;
          hash.update(c);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes: uploadReceived, md5: hash.digest('hex') })));
        return;
      }
      const hash = createHash('md5');
      const body = Readable.from(generate(BODY_BYTES, () => eventually('client received the first MiB', () => downloadReceived >= MiB, 20_000), hash));
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      body.pipe(res);
      body.on('end', () => (downloadMd5 = hash.digest('hex')));
    });
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const backendPort = (backend.address() as { port: number }).port;
    dir = await mkdtemp(join(tmpdir(), 'meshlet-stream-'));
    const config = join(dir, 'meshlet.yaml');
    await writeFile(
      config,
      [
        'service: { name: streamer, port: 1 }',
        'inbound: { address: 127.0.0.1, port: 0 }',
        'admin: { port: 0 }',
        'logging: { level: info, accessLog: false }',
        'workers: 1 # one process, so the PID measured is the one moving the bytes',
        'upstreams:',
        `  - { name: big, port: 0, endpoints: [{ address: 127.0.0.1, port: ${backendPort} }] }`,
      ].join('\n'),
    );
    sidecar = await startCliSidecar(config);
  });
  afterAll(async () => {
    if (sidecar) expect(await stopCli(sidecar)).toBe(0);
    await dispatcher.close();
    if (backend) await closeServer(backend);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('uploads and downloads 256 MiB each way with the sidecar memory bounded', { timeout: 180_000 }, async () => {
    const url = `http://127.0.0.1:${sidecar.ports.upstreams.big}`;
    const pid = sidecar.child.pid!;
    // Warm up the connection pool and code paths, then take the baseline peak.
    const warm = await request(`${url}/upload`, { method: 'POST', body: 'x', dispatcher });
    expect(warm.statusCode).toBe(200);
    await warm.body.text();
    const baseline = await procMemory(pid, 'VmHWM');

    const sentHash = createHash('md5');
    const upload = await request(`${url}/upload`, {
      method: 'POST',
      body: Readable.from(generate(BODY_BYTES, () => eventually('backend received the first MiB', () => uploadReceived >= MiB, 20_000), sentHash)),
      dispatcher,
    });
    expect(upload.statusCode).toBe(200);
    expect(await upload.body.json()).toEqual({ bytes: BODY_BYTES, md5: sentHash.digest('hex') });

    downloadReceived = 0;
    const download = await request(`${url}/download`, { dispatcher });
    expect(download.statusCode).toBe(200);
    const gotHash = createHash('md5');
    for await (const chunk of download.body) {
      downloadReceived += (chunk as Buffer).length;
      gotHash.update(chunk as Buffer);
    }
    expect(downloadReceived).toBe(BODY_BYTES);
    expect(gotHash.digest('hex')).toBe(downloadMd5);

    const peak = await procMemory(pid, 'VmHWM');
    expect(peak - baseline, `sidecar peak RSS grew from ${(baseline / MiB).toFixed(0)} MiB to ${(peak / MiB).toFixed(0)} MiB`).toBeLessThan(MAX_RSS_GROWTH);
  });
});
