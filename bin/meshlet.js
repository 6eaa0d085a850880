#!/usr/bin/env node
// Thin launcher: Node >= 22.18 runs the TypeScript sources directly (type stripping).
const { runCli } = await import('../sidecar/main.ts');
await runCli();
