import { z } from 'zod';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "250ms", "1.5s", "2m", "1h", "30d" or a bare number of milliseconds into milliseconds. */
export function parseDuration(input: string | number): number | undefined {
  if (typeof input === 'number') return Number.isFinite(input) && input >= 0 ? input : undefined;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(input);
  if (!match) return undefined;
  const unit = UNIT_MS[match[2] ?? 'ms'] ?? 1;
  return Math.round(Number(match[1]) * unit);
}

const DURATION_HINT = 'expected a duration such as 500ms, 2s, 1m (or milliseconds as a number)';

/** A zod value holding a duration, without a default; the parsed value is milliseconds. */
export function durationValue() {
  return z.union([z.number(), z.string()], { error: DURATION_HINT }).transform((value, ctx) => {
    const ms = parseDuration(value);
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: DURATION_HINT });
      return z.NEVER;
    }
    return ms;
  });
}

/** A zod field holding a duration with a default; the parsed value is milliseconds. */
export function duration(defaultMs: number, why: string) {
  return durationValue().default(defaultMs).describe(`${why} (default ${defaultMs} ms)`);
}
