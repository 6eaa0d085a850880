/**
 * Why a relayed head is not checked again: every field strict llhttp (the parser of both the wire
 * server and the upstream pool) accepts passes Meshlet's own field check (field-syntax.ts). Exhaustive
 * over one odd byte at each place in a field, then random heads over the bytes that matter.
 */
import { describe, expect, it } from 'vitest';
import { isFieldBlock } from '../../sidecar/protocols/wire/field-syntax.ts';
import { createParser, kOnHeaders, kOnHeadersComplete } from '../../sidecar/protocols/wire/llhttp.ts';

type Kind = 'request' | 'response';

const START: Record<Kind, string> = { request: 'GET / HTTP/1.1\r\nhost: a\r\n', response: 'HTTP/1.1 200 OK\r\n' };

/** The raw fields llhttp hands over for `fieldBytes` inside a head, or null when it refuses the head. */
function parsedFields(kind: Kind, fieldBytes: Buffer): string[] | null {
  const parser = createParser(kind, 64 * 1024);
  let fields: string[] = [];
  parser[kOnHeaders] = (flushed: string[]) => (fields = fields.concat(flushed));
  parser[kOnHeadersComplete] = (_major: number, _minor: number, raw: string[] | undefined) => {
    if (raw) fields = fields.concat(raw);
    return 1;
  };
  const result = parser.execute(Buffer.concat([Buffer.from(START[kind], 'latin1'), fieldBytes, Buffer.from('content-length: 0\r\n\r\n')]));
  parser.free();
  return result instanceof Error ? null : fields;
}

/** What the relay writes for the fields: the same lines the check runs over. */
function passesCheck(fields: string[]): boolean {
  let lines = '';
  for (let i = 0; i < fields.length; i += 2) lines += `${fields[i]}: ${fields[i + 1]}\r\n`;
  return isFieldBlock(lines, fields.length / 2);
}

describe('fields strict llhttp accepts pass the field check', () => {
  for (const kind of ['request', 'response'] as const) {
    it(`${kind}s: any single byte in a name, at the start, middle or end of a value`, () => {
      let accepted = 0;
      for (let byte = 0; byte < 256; byte++) {
        const b = String.fromCharCode(byte);
        for (const field of [`x${b}y: v\r\n`, `x: ${b}v\r\n`, `x: a${b}b\r\n`, `x: a${b}\r\n`]) {
          const fields = parsedFields(kind, Buffer.from(field, 'latin1'));
          if (fields === null) continue;
          accepted++;
          expect(passesCheck(fields), `${kind} ${JSON.stringify(field)} -> ${JSON.stringify(fields)}`).toBe(true);
        }
      }
      // Not vacuous: tokens, visible ASCII, tab and obs-text get through.
      expect(accepted).toBeGreaterThan(400);
    });

    it(`${kind}s: random field blocks over CR, LF, space, tab, colon, controls and obs-text`, () => {
      const alphabet = ['\r', '\n', '\r\n', ' ', '\t', ':', ': ', 'a', 'Z', '-', '\0', '\x01', '\x7f', '\x80', '\xff', '"', '(', '\r\n '];
      let seed = 7;
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      let accepted = 0;
      for (let round = 0; round < 3000; round++) {
        let text = 'x-a: v';
        const pieces = 1 + random(8);
        for (let p = 0; p < pieces; p++) text += alphabet[random(alphabet.length)];
        const fields = parsedFields(kind, Buffer.from(`${text}\r\n`, 'latin1'));
        if (fields === null) continue;
        accepted++;
        expect(passesCheck(fields), `${kind} ${JSON.stringify(text)} -> ${JSON.stringify(fields)}`).toBe(true);
      }
      expect(accepted).toBeGreaterThan(100);
    });
  }
});
