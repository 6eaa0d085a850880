/**
 * node:http through require() instead of an ESM import. Node builds an ESM facade for a builtin by
 * reading every export once, and node:http's `WebSocket`, `CloseEvent` and `MessageEvent` are getters
 * that load the whole bundled undici (fetch, WebSocket, EventSource): about 2.3 MiB of an idle
 * sidecar's resident memory for code it never runs. require() leaves those getters alone.
 * Import node:http's values from here; `import type` from 'node:http' costs nothing (erased).
 * test/integration/lazy-integrations.test.ts checks the bundle stays unloaded at idle.
 */
import { createRequire } from 'node:module';

const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export const { STATUS_CODES, createServer, request } = http;
