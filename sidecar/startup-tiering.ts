/**
 * Start-up tiering: V8's optimizing compilers (Maglev, TurboFan) stay off while the sidecar loads its
 * modules and starts, and come back on once it serves. Loading ~460 ES modules makes Node's module
 * resolver hot (URL parsing, path normalization, realpath), so V8 optimized ~80 functions during start,
 * 4 of them with TurboFan: that paged in ~7 MiB of the compilers' own machine code from the node binary
 * and kept their output, for code that never runs again. Idle RSS of a minimal sidecar: 76.7 -> 69.5
 * MiB (docs/performance.md, ninth session). Request handling is compiled after start, as before.
 *
 * bin/meshlet.js holds them before importing main.ts; main.ts resumes them when the sidecar serves
 * (at once for the other commands). Without the launcher (tests, `node sidecar/main.ts`) nothing was
 * held and resuming does nothing. V8 reads these two flags at each tiering decision, so changing them
 * at run time takes effect (test/unit/startup-tiering.test.ts checks it in a child process).
 */
import { setFlagsFromString } from 'node:v8';

let held = false;

/** Turns Maglev and TurboFan off until resumeOptimizingCompilers(); functions keep running in the interpreter and Sparkplug. */
export function holdOptimizingCompilers(): void {
  if (held) return;
  held = true;
  setFlagsFromString('--no-maglev');
  setFlagsFromString('--no-turbofan');
}

/** Turns them back on (a no-op unless held): hot code is optimized from its next tiering check. */
export function resumeOptimizingCompilers(): void {
  if (!held) return;
  held = false;
  setFlagsFromString('--maglev');
  setFlagsFromString('--turbofan');
}
