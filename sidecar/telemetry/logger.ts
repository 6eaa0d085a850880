/**
 * The process logger: pino JSON lines on stdout. pino's default destination writes asynchronously
 * (sonic-boom with `sync: false`, flushed on exit), so a log line on the request path never blocks on
 * a slow stdout reader; `createLogger` keeps that default. Secret-bearing fields are redacted by path.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

/** Keys whose values never reach a log line, at the top level or one object down. */
const SECRET_KEYS = ['token', 'key', 'privateKey', 'password', 'secret', 'authorization', 'cookie'];
const REDACT_PATHS = [...SECRET_KEYS, ...SECRET_KEYS.map((k) => `*.${k}`), 'headers["set-cookie"]', 'headers["proxy-authorization"]', 'headers["x-consul-token"]'];

/** The process logger: JSON lines on stdout (or `destination`), secrets redacted. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level, base: { name: 'meshlet' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that writes nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
