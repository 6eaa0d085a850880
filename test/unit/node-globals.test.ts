import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Node defines the globals `Buffer`, `process` and `performance` as accessors on globalThis: optimized
 * code cannot fold them, and every use calls LoadGlobalIC and the getter (~330 instructions; three per
 * proxied request before the sidecar imported them: docs/performance.md, tenth session). Imported, each
 * is a module binding. This keeps it so for every sidecar module.
 */
const ROOT = join(import.meta.dirname, '..', '..', 'sidecar');
const GLOBALS: ReadonlyArray<readonly [name: string, use: RegExp, imported: RegExp]> = [
  ['Buffer', /(?<![.\w$#])Buffer\b/, /import \{[^}]*\bBuffer\b[^}]*\} from 'node:buffer'/],
  ['process', /(?<![.\w$#])process\b(?!\s*:)/, /import process from 'node:process'/],
  ['performance', /(?<![.\w$#])performance\./, /import \{[^}]*\bperformance\b[^}]*\} from 'node:perf_hooks'/],
];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The code without comments and string contents, where a name in prose or a message is no use. */
function codeOf(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/[^\n]*/g, '')
    .replace(/'(?:[^'\\\n]|\\.)*'/g, "''")
    .replace(/"(?:[^"\\\n]|\\.)*"/g, '""')
    .replace(/`(?:[^`\\]|\\.)*`/g, '``');
}

describe('Node globals in sidecar modules', () => {
  it('are imported wherever they are used, never read off globalThis', () => {
    const files = sources(ROOT);
    expect(files.length).toBeGreaterThan(50);
    const missing: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      const code = codeOf(text);
      for (const [name, use, imported] of GLOBALS) {
        if (use.test(code) && !imported.test(text)) missing.push(`${relative(ROOT, file)}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
