/**
 * Relaying a received HTTP/1.1 head's fields without building a header object: what endToEndHeaders,
 * the forwarding headers and serializing do, in one pass over llhttp's raw name/value pairs, for the
 * common exchange no layer reads or edits headers of. Names keep their case and order. Each function
 * answers undefined for the rare head it leaves to the header-object path (a Connection field naming
 * other fields; a repeated field node:http would not simply comma-join), so both paths send the same.
 */
import { CLOSE_ONLY, connectionListed, forwardedElement, HOP_BY_HOP, type HopFacts } from './headers.ts';
import { REPEAT_RULES } from './wire/request.ts';

/** Lengths of the names a response relay must look at: a field of any other length is relayed without lowercasing it. */
const RESPONSE_NOTABLE_LENGTH = new Uint8Array(32);
for (const name of [...HOP_BY_HOP, 'content-length', 'via']) RESPONSE_NOTABLE_LENGTH[name.length] = 1;

/** What relayedResponseFields found (one object, reused: the caller reads it at once). */
export interface RelayedResponseFields {
  /** `name: value\r\n` per end-to-end field, in the order and case received, then one Via line. */
  lines: string;
  hasContentLength: boolean;
}

const response: RelayedResponseFields = { lines: '', hasContentLength: false };

/** Whether a hop-by-hop field can simply be dropped: false for a Connection field that names other fields to drop too. */
function droppable(lower: string, value: string): boolean {
  if (lower !== 'connection') return true;
  const listed = connectionListed(value);
  return listed === undefined || listed === CLOSE_ONLY;
}

/** A response's end-to-end fields as lines, with `via` appended to the received Via values (one line). */
export function relayedResponseFields(raw: readonly string[], via: string): RelayedResponseFields | undefined {
  let lines = '';
  let hasContentLength = false;
  let priorVia = '';
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (RESPONSE_NOTABLE_LENGTH[name.length] === 1) {
      const lower = name.toLowerCase();
      if (lower === 'content-length') hasContentLength = true;
      else if (lower === 'via') {
        priorVia += `${value}, `;
        continue;
      } else if (HOP_BY_HOP.has(lower)) {
        if (!droppable(lower, value)) return undefined;
        continue;
      }
    }
    lines += `${name}: ${value}\r\n`;
  }
  response.lines = `${lines}via: ${priorVia}${via}\r\n`;
  response.hasContentLength = hasContentLength;
  return response;
}

/** A request's fields, serialized: what the upstream pool sends as they are (see SerializedFields there). */
export interface RelayedRequestFields {
  /** End-to-end fields in the order and case received (without Expect and the framing fields), then the forwarding ones. */
  readonly lines: string;
  /** The received Content-Length value, if any: framing stays the pool's. */
  readonly contentLength: string | undefined;
  /** Whether a Host field was received (an HTTP/1.0 client may omit it; the upstream needs one). */
  readonly hasHost: boolean;
}

/** Names node:http keeps only the first of, or joins other than with commas: a repeat of one goes the object path. */
const SINGLE_BIT = new Map<string, number>([...REPEAT_RULES.keys()].filter((name) => name !== 'set-cookie').map((name, i) => [name, 1 << i]));

/**
 * A request's end-to-end fields as lines, then x-forwarded-for/-proto/-host, forwarded and via for
 * this hop (appended to received values as addForwardingHeaders does), with the received Host. The values added are the socket's address, constants and the received Host
 * (quotes and backslashes removed inside Forwarded), so every line stays valid.
 */
export function relayedRequestFields(raw: readonly string[], hop: HopFacts): RelayedRequestFields | undefined {
  let lines = '';
  let contentLength: string | undefined;
  let host: string | undefined;
  let priorFor = '';
  let priorForwarded = '';
  let priorVia = '';
  let hasProto = false;
  let hasForwardedHost = false;
  let seen = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    const bit = SINGLE_BIT.get(lower);
    if (bit !== undefined) {
      if ((seen & bit) !== 0) return undefined;
      seen |= bit;
    }
    switch (lower) {
      case 'content-length':
        contentLength = value;
        continue;
      case 'expect':
        // The listener already answered `Expect: 100-continue`: it is not the upstream's to answer.
        continue;
      case 'host':
        host = value;
        break;
      case 'x-forwarded-for':
        priorFor += `${value}, `;
        continue;
      case 'forwarded':
        priorForwarded += `${value}, `;
        continue;
      case 'via':
        priorVia += `${value}, `;
        continue;
      case 'x-forwarded-proto':
        hasProto = true;
        break;
      case 'x-forwarded-host':
        hasForwardedHost = true;
        break;
      default:
        if (HOP_BY_HOP.has(lower)) {
          if (!droppable(lower, value)) return undefined;
          continue;
        }
    }
    lines += `${name}: ${value}\r\n`;
  }
  const { clientAddress, proto, via } = hop;
  if (clientAddress) lines += `x-forwarded-for: ${priorFor}${clientAddress}\r\n`;
  else if (priorFor !== '') lines += `x-forwarded-for: ${priorFor.slice(0, -2)}\r\n`;
  // Keep the proto and host the first proxy saw: they describe the original request.
  if (!hasProto) lines += `x-forwarded-proto: ${proto}\r\n`;
  if (!hasForwardedHost && host) lines += `x-forwarded-host: ${host}\r\n`;
  lines += `forwarded: ${priorForwarded}${forwardedElement({ clientAddress, proto, host, via })}\r\nvia: ${priorVia}${via}\r\n`;
  return { lines, contentLength, hasHost: host !== undefined };
}
