#!/usr/bin/env node
// Thin launcher: Node >= 22.18 runs the TypeScript sources directly (type stripping).
// The module compile cache (in the OS temp dir; NODE_DISABLE_COMPILE_CACHE=1 turns it off) keeps the
// stripped and compiled modules, so later starts skip the TypeScript transform: about 25 MB less
// resident memory and a faster start (docs/performance.md).
import { enableCompileCache } from 'node:module';

enableCompileCache?.();
const { runCli } = await import('../sidecar/main.ts');
await runCli();
