/**
 * Holds N client connections open against an HTTP listener, each having made one keep-alive request,
 * then prints `READY {"open":..,"ok":..}` and waits to be killed. Used to read a proxy's RSS under load.
 * Connections still unanswered after 20 s (e.g. beyond a proxy's maxconn, waiting in the accept
 * queue) are reported as open but not ok.
 * Usage: node lib/conns.ts PORT COUNT
 */
import { connect, type Socket } from 'node:net';

const port = Number(process.argv[2]);
const count = Number(process.argv[3] ?? 10_000);
const BATCH = 500;
const request = Buffer.from('GET /small HTTP/1.1\r\nhost: bench\r\n\r\n');
const sockets: Socket[] = [];
let ok = 0;
let failed = 0;

function openOne(): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let head = '';
    let done = false;
    const finish = (good: boolean) => {
      if (done) return;
      done = true;
      if (good) ok++;
      else failed++;
      resolve();
    };
    socket.once('connect', () => socket.write(request));
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (head.includes('\r\n\r\n')) finish(head.startsWith('HTTP/1.1 200'));
    });
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
    sockets.push(socket);
  });
}

const DEADLINE_MS = 20_000;
const opened = (async () => {
  for (let i = 0; i < count; i += BATCH) {
    await Promise.all(Array.from({ length: Math.min(BATCH, count - i) }, openOne));
  }
})();
await Promise.race([opened, new Promise((resolve) => setTimeout(resolve, DEADLINE_MS).unref())]);
const open = sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;
process.stdout.write(`READY ${JSON.stringify({ open, ok, failed })}\n`);
setInterval(() => {}, 60_000);
