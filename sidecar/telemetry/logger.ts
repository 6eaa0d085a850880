import { pino, type Logger } from 'pino';

export type { Logger };

/** Keys whose values never reach a log line, wherever they sit in a logged object. */
const REDACT_PATHS = ['token', '*.token', 'key', '*.key', 'privateKey', '*.privateKey', 'authorization', '*.authorization', 'headers.authorization', 'headers.cookie'];

/** The process logger: JSON lines on stdout, secrets redacted. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level, base: { name: 'meshlet' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that writes nothing, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
