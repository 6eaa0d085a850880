#!/usr/bin/env -S node --expose-gc
// Thin launcher: Node >= 22.18 runs the TypeScript sources directly (type stripping).
// --expose-gc (the shebang; the image's entrypoint passes it too) lets `trimMemory` hand V8's grown
// young generation back to the OS when the sidecar is idle (sidecar/memory-trim.ts).
// The module compile cache (in the OS temp dir; NODE_DISABLE_COMPILE_CACHE=1 turns it off) keeps the
// stripped and compiled modules, so later starts skip the TypeScript transform: about 25 MB less
// resident memory and a faster start (docs/performance.md).
import { enableCompileCache } from 'node:module';

enableCompileCache?.();
// Start-up tiering (sidecar/startup-tiering.ts): no optimizing compiler while ~460 modules load and the
// sidecar starts, ~7 MiB less resident memory; main.ts turns them back on once it serves.
const { holdOptimizingCompilers } = await import('../sidecar/startup-tiering.ts');
holdOptimizingCompilers();
const { runCli } = await import('../sidecar/main.ts');
await runCli();
