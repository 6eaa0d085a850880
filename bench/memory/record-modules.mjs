// Preload (node --import) for bench/memory/idle.ts: records every module the process resolves (ESM and
// require) and writes the list, one URL a line, to $MESHLET_MODULE_LIST when the process gets SIGUSR2.
// Node's own internal modules, which no hook sees (a builtin loads them), follow as `node-internal:NAME`
// (from process.moduleLoadList): the bundled undici behind `fetch` is `node-internal:internal/deps/undici/undici`.
import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';

const seen = new Set();
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context);
    seen.add(result.url);
    return result;
  },
});
const out = process.env.MESHLET_MODULE_LIST;
const internals = () => process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => `node-internal:${m.slice('NativeModule '.length)}`);
if (out) process.on('SIGUSR2', () => writeFileSync(out, [...seen, ...internals()].join('\n') + '\n'));
