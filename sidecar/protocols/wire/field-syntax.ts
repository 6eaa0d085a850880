/**
 * What an HTTP/1.1 head may carry (RFC 9110 5.1, 5.5, 5.6.2), checked once per head instead of once per
 * field: the raw heads are built as strings anyway, and one anchored regex over all field lines runs
 * at ~1.4 ns per character here, where a regex test or a charCodeAt loop per field cost 2-3 ns per
 * character plus a call each (docs/performance.md, seventh session). The per-field checks stay for
 * the error message: they run only once the block check failed, to name the field.
 */

import { METHODS } from './llhttp.ts';

const TCHAR = "!#$%&'*+\\-.^_`|~0-9A-Za-z";
/** Any number of `name: value\r\n` lines: token names, values of tab, visible ASCII and obs-text. */
const FIELD_LINES = new RegExp(`^(?:[${TCHAR}]+: [\\t\\x20-\\x7e\\x80-\\xff]*\\r\\n)*$`);
const TOKEN = new RegExp(`^[${TCHAR}]+$`);
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** A request target: visible ASCII only (a space, CR or LF would end the request line early). */
const REQUEST_TARGET = /^[\x21-\x7e]+$/;

/** The methods node's parser knows (all tokens): a method is nearly always one, found without the regex. */
const KNOWN_METHODS = new Set(METHODS);

/** A token: what a header name and a method must be. */
export function isToken(text: string): boolean {
  return TOKEN.test(text);
}

/**
 * A method: a token. Checked per proxied request, so a known method is a set lookup (its string's hash
 * is cached) rather than a regex call, whose fixed cost is ~180 instructions for a three-letter word.
 */
export function isMethod(text: string): boolean {
  return KNOWN_METHODS.has(text) || TOKEN.test(text);
}

/** A field value holds tabs, visible ASCII and obs-text (latin1), never CR, LF, NUL, DEL or other controls. */
export function isFieldValue(text: string): boolean {
  return FIELD_VALUE.test(text);
}

/** Longest target checked with a loop: below it the loop beats the regex's fixed cost, above it the regex's per-character speed wins. */
const LOOP_TARGET_CHARS = 48;

export function isRequestTarget(text: string): boolean {
  const length = text.length;
  if (length > LOOP_TARGET_CHARS) return REQUEST_TARGET.test(text);
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return length > 0;
}

/**
 * True when `lines` is exactly `count` well-formed field lines. The count matters: a value holding
 * CR LF followed by `name: value` would pass the pattern as two lines (a header injected by a value).
 */
export function isFieldBlock(lines: string, count: number): boolean {
  if (!FIELD_LINES.test(lines)) return false;
  let ends = 0;
  for (let i = lines.indexOf('\n'); i !== -1; i = lines.indexOf('\n', i + 1)) ends++;
  return ends === count;
}

/**
 * The first field of `headers` that fails the checks, for the error that names it: a name that is not a
 * token, or a string value that is not a field value (numbers always pass; undefined values are not
 * written, so not checked). `skipValue` picks names whose value the caller does not write as given.
 */
export function firstBadField(
  headers: Readonly<Record<string, string | number | readonly string[] | undefined>>,
  skipValue?: (name: string) => boolean,
): { readonly name: string; readonly part: 'name' | 'value' } | undefined {
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (!isToken(name)) return { name, part: 'name' };
    if (skipValue?.(name)) continue;
    for (const item of typeof value === 'object' ? value : [value]) {
      if (typeof item !== 'number' && !isFieldValue(item)) return { name, part: 'value' };
    }
  }
  return undefined;
}
