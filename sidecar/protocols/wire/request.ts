/**
 * The request side of the raw-socket HTTP/1.1 server: the parsed request (headers built lazily, the
 * way node:http combines duplicates) and its body stream, created only when the request has a body.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { WireRequest } from './server-connection.ts';

/** How node:http treats a repeated field (IncomingMessage#_addHeaderLine). */
const Repeat = { firstWins: 0, array: 1, semicolon: 2 } as const;

/** Fields node:http keeps only the first of (matchKnownFields in _http_incoming.js), or joins other than with commas; the rest are comma-joined. */
export const REPEAT_RULES: ReadonlyMap<string, number> = new Map<string, number>([
  ...[
    'age',
    'authorization',
    'content-length',
    'content-type',
    'etag',
    'expires',
    'from',
    'host',
    'if-modified-since',
    'if-unmodified-since',
    'last-modified',
    'location',
    'max-forwards',
    'proxy-authorization',
    'referer',
    'retry-after',
    'server',
    'user-agent',
  ].map((name) => [name, Repeat.firstWins] as const),
  ['set-cookie', Repeat.array],
  ['cookie', Repeat.semicolon],
]);

/** Builds node:http's `req.headers` from raw name/value pairs: lowercase names, duplicates combined as node does. */
export function combineHeaders(raw: readonly string[]): IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    const existing = headers[name];
    const rule = REPEAT_RULES.get(name);
    if (rule === Repeat.array) {
      if (existing === undefined) headers[name] = [value];
      else (existing as string[]).push(value);
    } else if (existing === undefined) headers[name] = value;
    else if (rule === undefined) headers[name] = `${existing as string}, ${value}`;
    else if (rule === Repeat.semicolon) headers[name] = `${existing as string}; ${value}`;
  }
  return headers as IncomingHttpHeaders;
}

/** One parsed request head; `headers` is built from `rawHeaders` on first access (most proxied requests need only a few). */
export class ParsedRequest implements WireRequest {
  readonly method: string;
  url: string;
  readonly httpVersion: string;
  readonly rawHeaders: readonly string[];
  readonly socket: Socket;
  readonly body: RequestBody | null;
  #headers: IncomingHttpHeaders | undefined;

  constructor(method: string, url: string, httpVersion: string, rawHeaders: readonly string[], socket: Socket, body: RequestBody | null) {
    this.method = method;
    this.url = url;
    this.httpVersion = httpVersion;
    this.rawHeaders = rawHeaders;
    this.socket = socket;
    this.body = body;
  }

  get headers(): IncomingHttpHeaders {
    return (this.#headers ??= combineHeaders(this.rawHeaders));
  }

  /** The raw fields while `headers` was never asked for (so nothing can have edited them), else undefined. */
  get untouchedRawHeaders(): readonly string[] | undefined {
    return this.#headers === undefined ? this.rawHeaders : undefined;
  }
}

/**
 * A request body fed by the connection's parser. `wantMore` is the connection's (one, shared) way to
 * resume reading the socket after `push` asked for a pause.
 */
export class RequestBody extends Readable {
  readonly #wantMore: () => void;

  constructor(wantMore: () => void) {
    super();
    this.#wantMore = wantMore;
    // A client leaving mid-body destroys the body with an error; whoever reads it (the upstream pool,
    // a retry buffer) listens for that, but may already have stopped reading, and an 'error' with no
    // listener would end the process.
    this.on('error', ignoreAbort);
  }

  override _read(): void {
    this.#wantMore();
  }
}

/** What the connection acts on in a request head. */
export interface HeadFacts {
  hasBody: boolean;
  expect: string | undefined;
  upgrade: string | undefined;
  /** Host field lines seen (RFC 9112 3.2 wants exactly one in HTTP/1.1; an empty value is allowed). */
  hostLines: number;
}

/** The few fields this server acts on, found in one pass over the raw pairs (reused object: no allocation per request). */
const facts: HeadFacts = { hasBody: false, expect: undefined, upgrade: undefined, hostLines: 0 };

export function scanHead(raw: readonly string[]): HeadFacts {
  facts.hasBody = false;
  facts.expect = undefined;
  facts.upgrade = undefined;
  facts.hostLines = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] as string;
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') facts.hostLines++;
        break;
      case 6:
        if (name.toLowerCase() === 'expect') facts.expect = raw[i + 1];
        break;
      case 7:
        if (name.toLowerCase() === 'upgrade') facts.upgrade = raw[i + 1];
        break;
      case 14:
        if (name.toLowerCase() === 'content-length' && Number(raw[i + 1]) > 0) facts.hasBody = true;
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') facts.hasBody = true;
        break;
    }
  }
  return facts;
}

/** Body failures are reported to the body's readers through their own 'error' listeners. */
function ignoreAbort(): void {}
