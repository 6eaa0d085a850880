import { describe, expect, it } from 'vitest';
import { firstBadField, isFieldBlock, isFieldValue, isMethod, isRequestTarget, isToken } from '../../sidecar/protocols/wire/field-syntax.ts';
import { METHODS } from '../../sidecar/protocols/wire/llhttp.ts';

describe('field syntax of an HTTP/1.1 head', () => {
  it('accepts well-formed field lines, empty values, tabs and obs-text', () => {
    expect(isFieldBlock('', 0)).toBe(true);
    expect(isFieldBlock('host: a\r\nx-empty: \r\nx-tab: a\tb\r\nx-latin1: caf\u00e9\r\n', 4)).toBe(true);
    expect(isFieldBlock("x-~!#$%&'*+-.^_`|: v\r\n", 1)).toBe(true);
  });

  it('refuses a value that smuggles a second line in, even when both lines look well formed', () => {
    // Two valid-looking lines out of one field: only the count tells.
    expect(isFieldBlock('x-evil: a\r\nset-cookie: pwned=1\r\n', 1)).toBe(false);
    expect(isFieldBlock('x-evil: a\r\n\r\nGET /smuggled HTTP/1.1\r\n', 1)).toBe(false);
  });

  it('refuses lone CR or LF, other controls, DEL and characters beyond latin1 in values', () => {
    for (const value of ['a\rb', 'a\nb', 'a\0b', 'a\x1bb', 'a\x7fb', 'a\u0100b', 'snow\u2603']) {
      expect(isFieldBlock(`x: ${value}\r\n`, 1), JSON.stringify(value)).toBe(false);
      expect(isFieldValue(value), JSON.stringify(value)).toBe(false);
    }
  });

  it('refuses names that are not tokens and lines without the colon and space', () => {
    for (const line of ['bad name: v\r\n', 'bad"name: v\r\n', 'bad(name): v\r\n', ': v\r\n', 'name:v\r\n', 'name: v\n', 'name: v']) {
      expect(isFieldBlock(line, 1), JSON.stringify(line)).toBe(false);
    }
    expect(isToken('x-request-id')).toBe(true);
    for (const name of ['', 'a b', 'a:b', 'a\r\nb', 'caf\u00e9', 'a,b']) expect(isToken(name), JSON.stringify(name)).toBe(false);
  });

  it('takes visible ASCII request targets only', () => {
    expect(isRequestTarget('/a/b?c=d%20e')).toBe(true);
    for (const target of ['', '/a b', '/a\r\nb', '/caf\u00e9', '/\t']) expect(isRequestTarget(target), JSON.stringify(target)).toBe(false);
  });

  it('names the first bad field in order, skipping undefined values and the values the caller writes itself', () => {
    expect(firstBadField({ a: 'ok', 'b c': 'v', d: 'x\r\ny' })).toEqual({ name: 'b c', part: 'name' });
    expect(firstBadField({ a: 'ok', d: ['fine', 'x\0'], e: 'x\ny' })).toEqual({ name: 'd', part: 'value' });
    expect(firstBadField({ n: 42, u: undefined, 'content-length': 'x\r\n', z: 'bad\r' }, (name) => name === 'content-length')).toEqual({ name: 'z', part: 'value' });
    expect(firstBadField({ a: 'ok', b: ['c', 'd'] })).toBeUndefined();
  });
});

describe('the per-request line checks', () => {
  /** Random strings over an alphabet of every character class the checks tell apart, 0-120 long. */
  function randomStrings(count: number): string[] {
    const alphabet = ['a', 'Z', '0', '/', '?', '%', '-', '~', '!', '"', '(', ' ', '\t', '\r', '\n', '\0', '\x7f', '\x80', 'é', '€'];
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    return Array.from({ length: count }, () => {
      const length = Math.floor(next() * 121);
      let text = '';
      // Mostly visible ASCII, so long valid targets (the regex side of the loop's cut-off) occur too.
      for (let i = 0; i < length; i++) text += next() < 0.97 ? alphabet[Math.floor(next() * 10)] : alphabet[Math.floor(next() * alphabet.length)];
      return text;
    });
  }

  it('isRequestTarget agrees with /^[\\x21-\\x7e]+$/ on either side of its loop cut-off', () => {
    const strings = randomStrings(5000);
    expect(strings.filter((s) => s.length > 48 && /^[\x21-\x7e]+$/.test(s)).length).toBeGreaterThan(50);
    expect(strings.filter((s) => s.length <= 48 && /^[\x21-\x7e]+$/.test(s)).length).toBeGreaterThan(50);
    for (const s of [...strings, '', '/', ' /', '/ ', '/\x7f']) expect(isRequestTarget(s), JSON.stringify(s)).toBe(/^[\x21-\x7e]+$/.test(s));
  });

  it('isMethod accepts every method the parser knows and agrees with isToken on anything else', () => {
    for (const method of METHODS) expect(isMethod(method), method).toBe(true);
    for (const s of [...randomStrings(2000), '', 'GET ', 'G(T', 'PURGE', 'x-custom']) expect(isMethod(s), JSON.stringify(s)).toBe(isToken(s));
  });
});
