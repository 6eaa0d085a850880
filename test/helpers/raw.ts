/** Raw HTTP over a socket, for requests that HTTP clients refuse to send (bad framing, hop headers). */
import { connect } from 'node:net';

/** Sends `text` to 127.0.0.1:`port` and resolves with everything received until the server closes. */
export function rawExchange(port: number, text: string | Buffer, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no close from port ${port} within ${timeoutMs} ms`)));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(text);
  });
}
