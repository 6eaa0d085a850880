import { describe, expect, it } from 'vitest';
import { addForwardingHeaders, endToEndHeaders, type HeaderMap } from '../../sidecar/protocols/headers.ts';
import { relayedRequestFields, relayedResponseFields } from '../../sidecar/protocols/relayed-fields.ts';
import { combineHeaders } from '../../sidecar/protocols/wire/request.ts';

describe('relaying a response head', () => {
  it('keeps end-to-end fields in order and case, drops hop-by-hop ones, and joins Via into one line with ours', () => {
    const raw = ['Server', 'nginx', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Via', '1.0 edge', 'Transfer-Encoding', 'chunked', 'Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'VIA', '1.1 lb', 'TE', 'x', 'Age', '3'];
    expect(relayedResponseFields(raw, '1.1 meshlet')).toEqual({
      lines: 'Server: nginx\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nAge: 3\r\nvia: 1.0 edge, 1.1 lb, 1.1 meshlet\r\n',
      hasContentLength: false,
    });
  });

  it('notes a content-length in any case, and adds Via when none was received', () => {
    expect(relayedResponseFields(['CONTENT-LENGTH', '5'], '1.1 meshlet')).toEqual({ lines: 'CONTENT-LENGTH: 5\r\nvia: 1.1 meshlet\r\n', hasContentLength: true });
    expect(relayedResponseFields([], '1.1 meshlet')).toEqual({ lines: 'via: 1.1 meshlet\r\n', hasContentLength: false });
  });

  it('leaves a head whose Connection names other fields to the header-object path, and takes close and keep-alive itself', () => {
    expect(relayedResponseFields(['Connection', 'close, x-hop', 'x-hop', '1'], '1.1 meshlet')).toBeUndefined();
    expect(relayedResponseFields(['Connection', 'Close', 'x-end', '1'], '1.1 meshlet')?.lines).toBe('x-end: 1\r\nvia: 1.1 meshlet\r\n');
    expect(relayedResponseFields(['connection', 'keep-alive', 'x-end', '1'], '1.1 meshlet')?.lines).toBe('x-end: 1\r\nvia: 1.1 meshlet\r\n');
  });
});

/** What the header-object path sends for the same raw request fields: combine, end-to-end, no Expect, forwarding. */
function objectPathFields(raw: string[], hop: { clientAddress: string | undefined; proto: 'http' | 'https'; via: string }): HeaderMap {
  const headers = endToEndHeaders(combineHeaders(raw));
  delete headers.expect;
  addForwardingHeaders(headers, { ...hop, host: headers.host as string | undefined });
  return headers;
}

/** Parses relayed lines back into the object shape, repeated fields comma-joined as a recipient would. */
function linesAsHeaders(lines: string, contentLength: string | undefined): HeaderMap {
  const out: Record<string, string> = {};
  for (const line of lines.split('\r\n').filter(Boolean)) {
    const at = line.indexOf(': ');
    const name = line.slice(0, at).toLowerCase();
    out[name] = out[name] === undefined ? line.slice(at + 2) : `${out[name]}, ${line.slice(at + 2)}`;
  }
  if (contentLength !== undefined) out['content-length'] = contentLength;
  return out;
}

describe('relaying a request head', () => {
  const hop = { clientAddress: '10.0.0.5', proto: 'http' as const, via: '1.1 meshlet' };

  it('sends what the header-object path sends: hop-by-hop and Expect dropped, forwarding fields appended to received ones', () => {
    const cases: string[][] = [
      ['Host', 'greeter:9001', 'User-Agent', 'curl/8', 'Accept', '*/*'],
      ['host', 'h', 'X-Forwarded-For', '203.0.113.7', 'x-forwarded-for', '198.51.100.1', 'X-Forwarded-Proto', 'https', 'Forwarded', 'for=203.0.113.7', 'Via', '1.1 edge', 'X-Forwarded-Host', 'shop'],
      ['Host', 'h', 'Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'TE', 'trailers', 'Expect', '100-continue', 'Content-Length', '12', 'Transfer-Encoding', 'chunked', 'Upgrade', 'h2c'],
      ['Host', 'h"q\\', 'Accept', 'a', 'accept', 'b', 'X-Custom', 'kept'],
    ];
    for (const raw of cases) {
      const relayed = relayedRequestFields(raw, hop);
      expect(relayed, JSON.stringify(raw)).toBeDefined();
      const expected = objectPathFields(raw, hop);
      expect(linesAsHeaders(relayed!.lines, relayed!.contentLength), JSON.stringify(raw)).toEqual(expected);
      expect(relayed!.lines).not.toMatch(/^(content-length|transfer-encoding|connection|keep-alive|expect):/im);
    }
  });

  it('keeps names in the case received and says whether a Host came', () => {
    const relayed = relayedRequestFields(['X-Trace', 'a', 'Host', 'h'], hop)!;
    expect(relayed.lines.startsWith('X-Trace: a\r\nHost: h\r\n')).toBe(true);
    expect(relayed.hasHost).toBe(true);
    expect(relayedRequestFields(['Accept', '*/*'], hop)!.hasHost).toBe(false);
    expect(relayedRequestFields(['Accept', '*/*'], { ...hop, clientAddress: undefined })!.lines).not.toContain('for=');
  });

  it('leaves to the object path what it would not send the same: Connection naming fields, repeats node keeps one of', () => {
    expect(relayedRequestFields(['Host', 'h', 'Connection', 'x-hop', 'x-hop', '1'], hop)).toBeUndefined();
    expect(relayedRequestFields(['Host', 'h', 'Authorization', 'a', 'authorization', 'b'], hop)).toBeUndefined();
    expect(relayedRequestFields(['Host', 'h', 'Cookie', 'a=1', 'Cookie', 'b=2'], hop)).toBeUndefined();
    expect(relayedRequestFields(['Host', 'h', 'Cookie', 'a=1', 'Authorization', 'b'], hop)).toBeDefined();
  });
});
