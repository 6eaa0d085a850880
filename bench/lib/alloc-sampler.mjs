// Preloaded into a profiled process (`node --import bench/lib/alloc-sampler.mjs`): the first SIGUSR2
// starts V8's sampling heap profiler, keeping samples of objects the GC already collected (so it
// counts what was allocated, not what survived); the second writes the profile to ALLOC_PROFILE_OUT.
// With ALLOC_SURVIVORS=1 it drops the samples of objects a scavenge collected: what is left survived
// the young generation (copied, promoted, then freed only by a full GC) or is still alive.
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';

const out = process.env.ALLOC_PROFILE_OUT;
if (!out) throw new Error('alloc-sampler: set ALLOC_PROFILE_OUT');
const session = new Session();
session.connect();
let sampling = false;
process.on('SIGUSR2', () => {
  if (!sampling) {
    sampling = true;
    const survivorsOnly = process.env.ALLOC_SURVIVORS === '1';
    session.post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !survivorsOnly });
    return;
  }
  sampling = false;
  session.post('HeapProfiler.stopSampling', (err, result) => {
    if (err) throw err;
    writeFileSync(out, JSON.stringify(result.profile));
    process.stderr.write(`alloc-sampler: wrote ${out}\n`);
  });
});
