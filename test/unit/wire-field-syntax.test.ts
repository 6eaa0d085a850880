import { describe, expect, it } from 'vitest';
import { firstBadField, isFieldBlock, isFieldValue, isRequestTarget, isToken } from '../../sidecar/protocols/wire/field-syntax.ts';

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
