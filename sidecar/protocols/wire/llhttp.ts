/**
 * Node's own HTTP/1.1 parser (llhttp, the one node:http uses) for the raw-socket fast path. Reached
 * through `_http_common`, which Node still exports (undocumented but stable since Node 12; the
 * public node:http server and client are built on it). Strict mode only: no lenient flags, so
 * ambiguous Content-Length/Transfer-Encoding, bad chunking and oversized heads are errors exactly
 * as in node:http.
 */
import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';

/** One llhttp parser instance. Callbacks are installed as numbered properties (see the k* constants). */
export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  /** Parses `data`; returns the bytes consumed, or an Error with `code` (HPE_*) and `bytesParsed`. */
  execute(data: Buffer): number | LlhttpError;
  /** Signals end of input (a close-delimited body ends here); returns an Error if the message was cut. */
  finish(): number | LlhttpError | undefined;
  /** Releases the native parser's resources; it may be initialize()d again afterwards. */
  remove(): void;
  free(): void;
  /** Deletes the native parser; its JS object (held by a global handle until then) can be collected. */
  close(): void;
  pause(): void;
  resume(): void;
  /**
   * Makes the native parser the reader of a StreamBase handle (a socket's `_handle`): each read is
   * parsed in C++ without a JS 'data' event, then `kOnExecute` is called with what execute() would
   * have returned. node:http's server does this for every connection.
   */
  consume(handle: object): void;
  /** Gives the handle's reads back to the socket (its 'data' events). */
  unconsume(): void;
  /** Inside kOnExecute of a consumed handle: a copy of the chunk just parsed. */
  getCurrentBuffer(): Buffer;
  [key: number]: unknown;
}

export interface LlhttpError extends Error {
  readonly code: string;
  readonly reason?: string;
  readonly bytesParsed: number;
}

interface ParserConstructor {
  new (): LlhttpParser;
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kOnExecute: number;
  readonly kLenientNone: number;
}

const common = createRequire(import.meta.url)('_http_common') as { HTTPParser: ParserConstructor; methods: string[] };

export const HTTPParser = common.HTTPParser;
/** Method names indexed by the number llhttp reports in the headers-complete callback. */
export const METHODS: readonly string[] = common.methods;

/** Called with headers flushed early (more than 32 fields, or trailers) and the URL so far. */
export const kOnHeaders = HTTPParser.kOnHeaders;
/**
 * `(versionMajor, versionMinor, rawHeaders | undefined, method, url | undefined, statusCode,
 * statusMessage, upgrade, shouldKeepAlive)`; headers and url are undefined when they were flushed
 * through kOnHeaders first. Returning 1 tells the parser the message has no body (responses to HEAD),
 * 2 that it has no body and the connection is switching protocols.
 */
export const kOnHeadersComplete = HTTPParser.kOnHeadersComplete;
/** `(chunk: Buffer)`: body bytes, already de-chunked. */
export const kOnBody = HTTPParser.kOnBody;
export const kOnMessageComplete = HTTPParser.kOnMessageComplete;
/** `(result: number | LlhttpError)`: after each read a consumed parser parsed (see `consume`). */
export const kOnExecute = HTTPParser.kOnExecute;

/** A strict parser for requests (`'request'`) or responses; heads over `maxHeaderBytes` fail with HPE_HEADER_OVERFLOW. */
export function createParser(kind: 'request' | 'response', maxHeaderBytes: number): LlhttpParser {
  const parser = new HTTPParser();
  parser.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, maxHeaderBytes, HTTPParser.kLenientNone);
  return parser;
}

const released = new WeakSet<LlhttpParser>();

function closeParser(parser: LlhttpParser): void {
  parser.close();
}

/**
 * Releases a parser for good once its connection is gone. The native parser holds its JS object (and
 * through the callbacks, the whole connection) by a global handle until close(): skipping it leaks
 * every connection. close() is deferred as node:http does, since this may run inside a parser callback.
 */
export function releaseParser(parser: LlhttpParser): void {
  if (released.has(parser)) return;
  released.add(parser);
  parser.remove();
  parser.free();
  setImmediate(closeParser, parser);
}
