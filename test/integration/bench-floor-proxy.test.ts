/**
 * The bench's Node floor proxy is a reference row in every report: if it mangled responses the
 * figures it yields would mean nothing. Checked here through real sockets, on the shapes the bench
 * sends (small and 1 MiB bodies, Connection: close) and on a chunked answer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../examples/demo.ts';
import { startBackend, type TestBackend } from '../helpers/backend.ts';

const FLOOR = join(import.meta.dirname, '..', '..', 'bench', 'floor-proxy.js');
const MIB = Buffer.alloc(1024 * 1024, 'x');

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('bench floor proxy (bench/floor-proxy.js)', () => {
  let backend: TestBackend;
  let floor: ChildProcess;
  let port: number;

  beforeAll(async () => {
    backend = await startBackend('floor-backend', (req, res) => {
      if (req.url === '/1m') res.end(MIB);
      else if (req.url === '/chunked') {
        res.write('one,');
        res.end('two');
      } else res.end(`hello ${req.headers['x-forwarded-for']}`);
    });
    port = await freePort();
    floor = spawn(process.execPath, [FLOOR, String(port), String(backend.port)], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      if (await get(port, '/').then(() => true, () => false)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(async () => {
    floor?.kill();
    await backend?.close();
  });

  it('forwards small and 1 MiB bodies intact, with x-forwarded-for, over reused connections', async () => {
    for (let i = 0; i < 3; i++) {
      const small = await get(port, '/small');
      expect(small.status).toBe(200);
      expect(small.body.toString()).toBe('hello 127.0.0.1');
      const large = await get(port, '/1m');
      expect(large.body.equals(MIB)).toBe(true);
    }
  });

  it('re-chunks a chunked answer and honours Connection: close', async () => {
    const chunked = await get(port, '/chunked');
    expect(chunked.body.toString()).toBe('one,two');
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
    const closing = await get(port, '/small', { connection: 'close' });
    expect(closing.headers.connection).toBe('close');
    expect(closing.body.toString()).toBe('hello 127.0.0.1');
  });
});
