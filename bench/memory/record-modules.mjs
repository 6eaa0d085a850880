// Preload (node --import) for bench/memory/idle.ts: records every module the process resolves (ESM and
// require) and writes the list, one URL a line, to $MESHLET_MODULE_LIST when the process gets SIGUSR2.
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
if (out) process.on('SIGUSR2', () => writeFileSync(out, [...seen].join('\n') + '\n'));
