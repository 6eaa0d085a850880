/**
 * Summarizes a sampling heap profile (bench/lib/alloc-sampler.mjs) as bytes allocated per request, by
 * file and by function (self: the function on top of the stack when V8 allocated).
 */
import { readFileSync } from 'node:fs';

interface HeapNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children: HeapNode[];
}
interface HeapProfile {
  head: HeapNode;
  samples: { nodeId: number; size: number }[];
}

export interface AllocSummary {
  readonly bytesPerRequest: number;
  readonly byFile: [string, number][];
  readonly byFunction: [string, number][];
}

function where(url: string): string {
  return url.replace(/^.*\/(node_modules\/)/, '$1').replace(/^file:\/\/.*?\/(sidecar|bench|certs)\//, '$1/') || '(native)';
}

export function summarizeAllocations(file: string, requests: number): AllocSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as HeapProfile;
  const sizeOf = new Map<number, number>();
  for (const s of profile.samples) sizeOf.set(s.nodeId, (sizeOf.get(s.nodeId) ?? 0) + s.size);
  const byFile = new Map<string, number>();
  const byFunction = new Map<string, number>();
  let total = 0;
  const stack = [profile.head];
  while (stack.length > 0) {
    const node = stack.pop()!;
    stack.push(...node.children);
    const bytes = sizeOf.get(node.id);
    if (!bytes) continue;
    total += bytes;
    const file = where(node.callFrame.url);
    byFile.set(file, (byFile.get(file) ?? 0) + bytes);
    const fn = `${node.callFrame.functionName || '(anonymous)'} ${file}:${node.callFrame.lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + bytes);
  }
  const perRequest = (entries: Map<string, number>) => [...entries].map(([k, v]): [string, number] => [k, v / requests]).sort((a, b) => b[1] - a[1]);
  return { bytesPerRequest: total / requests, byFile: perRequest(byFile), byFunction: perRequest(byFunction) };
}
