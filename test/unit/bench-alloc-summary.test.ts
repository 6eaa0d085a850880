import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { summarizeAllocations } from '../../bench/lib/alloc-summary.ts';

const frame = (functionName: string, url: string, lineNumber = 0) => ({ functionName, url, lineNumber });

describe('bench allocation summary', () => {
  it('turns a sampling heap profile into bytes per request by file and by function, largest first', () => {
    const profile = {
      head: {
        id: 1,
        callFrame: frame('(root)', ''),
        children: [
          {
            id: 2,
            callFrame: frame('run', 'file:///work/main/sidecar/protocols/http1.ts', 80),
            children: [{ id: 3, callFrame: frame('request', 'file:///work/main/sidecar/protocols/wire/upstream-pool.ts', 222), children: [] }],
          },
          { id: 4, callFrame: frame('emit', 'node:events', 488), children: [] },
        ],
      },
      samples: [
        { nodeId: 2, size: 1000 },
        { nodeId: 3, size: 3000 },
        { nodeId: 3, size: 1000 },
        { nodeId: 4, size: 500 },
        { nodeId: 1, size: 400 },
      ],
    };
    const file = join(mkdtempSync(join(tmpdir(), 'alloc-')), 'p.heapprofile');
    writeFileSync(file, JSON.stringify(profile));
    const summary = summarizeAllocations(file, 10);
    expect(summary.bytesPerRequest).toBe(590);
    expect(summary.byFunction[0]).toEqual(['request sidecar/protocols/wire/upstream-pool.ts:223', 400]);
    expect(summary.byFile).toEqual([
      ['sidecar/protocols/wire/upstream-pool.ts', 400],
      ['sidecar/protocols/http1.ts', 100],
      ['node:events', 50],
      ['(native)', 40],
    ]);
  });
});
