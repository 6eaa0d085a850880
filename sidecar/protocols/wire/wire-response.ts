/**
 * A response head read off a pooled connection. The fields stay as llhttp gave them (name, value,
 * name, value...) until someone asks for `headers`: a proxy that only relays them writes them out
 * straight from the pairs (WireReply#writeRelayedHead), with no object built, edited and iterated per response.
 */
import type { WireBody } from './response-body.ts';

export class WireResponse {
  /**
   * Not a thenable, said where V8 looks first. Resolving a promise with an object looks up its `then`,
   * through the prototype chain to Object.prototype when there is none: six times per proxied request
   * as a response passes the layers. An own `then` of undefined ends each lookup at the object.
   */
  readonly then = undefined;
  readonly statusCode: number;
  readonly statusMessage: string;
  /** The fields as received, original case and order. Strict llhttp accepted each name and value. */
  readonly rawHeaders: readonly string[];
  readonly body: WireBody;
  #headers: Record<string, string | string[]> | undefined;

  constructor(statusCode: number, statusMessage: string, rawHeaders: readonly string[], body: WireBody) {
    this.statusCode = statusCode;
    this.statusMessage = statusMessage;
    this.rawHeaders = rawHeaders;
    this.body = body;
  }

  /** Lowercase names; repeated headers become arrays (set-cookie always an array): the shape undici gives. Built on first access; callers may edit it. */
  get headers(): Record<string, string | string[]> {
    return (this.#headers ??= headerRecord(this.rawHeaders));
  }

  /** The raw fields while `headers` was never asked for (so nothing can have edited them), else undefined. */
  get untouchedRawHeaders(): readonly string[] | undefined {
    return this.#headers === undefined ? this.rawHeaders : undefined;
  }
}

function headerRecord(raw: readonly string[]): Record<string, string | string[]> {
  // Null prototype: a field named `constructor` or `__proto__` is just a field.
  const out: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    const prior = out[name];
    if (prior === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (typeof prior === 'string') out[name] = [prior, value];
    else prior.push(value);
  }
  return out;
}
