import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const MODULE = join(import.meta.dirname, '..', '..', 'sidecar', 'startup-tiering.ts');

/**
 * A child node with --trace-opt runs one hot function while the compilers are held and another after
 * they resume: V8 must optimize only the second. This is the assumption the launcher's start-up
 * tiering rests on (flags changed at run time take effect), so it is checked on the node that runs it.
 */
const CHILD = `
import { holdOptimizingCompilers, resumeOptimizingCompilers } from ${JSON.stringify(MODULE)};
function hotWhileHeld(a, b) { return (a * 31 + b) % 1000003; }
function hotAfterResume(a, b) { return (a * 37 + b) % 1000033; }
async function spin(fn) {
  let s = 0;
  // Many turns of the event loop: optimization is concurrent and installs between them.
  for (let turn = 0; turn < 200; turn++) {
    for (let i = 0; i < 20000; i++) s = fn(s, i);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return s;
}
holdOptimizingCompilers();
await spin(hotWhileHeld);
console.log('--- resumed');
resumeOptimizingCompilers();
await spin(hotAfterResume);
`;

describe('start-up tiering (bin/meshlet.js holds the optimizing compilers until the sidecar serves)', () => {
  it('V8 optimizes nothing while they are held, and hot code again once they resume', () => {
    const child = spawnSync(process.execPath, ['--trace-opt', '--input-type=module', '-e', CHILD], { encoding: 'utf8', timeout: 60_000 });
    expect(child.status, child.stderr).toBe(0);
    const [held, resumed] = child.stdout.split('--- resumed');
    const optimized = (text: string | undefined, name: string) => (text ?? '').split('\n').filter((line) => line.includes('completed') && line.includes(`<JSFunction ${name}`)).length;
    expect(optimized(held, 'hotWhileHeld')).toBe(0);
    expect(optimized(resumed, 'hotAfterResume')).toBeGreaterThan(0);
    // The control: the same loop optimizes without the hold (the child really is hot enough).
    const free = spawnSync(process.execPath, ['--trace-opt', '--input-type=module', '-e', CHILD.replace('holdOptimizingCompilers();', '')], { encoding: 'utf8', timeout: 60_000 });
    expect(optimized(free.stdout.split('--- resumed')[0], 'hotWhileHeld')).toBeGreaterThan(0);
  });
});
