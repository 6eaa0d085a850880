import { describe, expect, it } from 'vitest';
import { categorize, jitName, parsePerfMap, summarizeInstructions } from '../../bench/lib/callgrind-summary.ts';

// The shape of `callgrind_annotate --threshold=100` output (valgrind 3.19), trimmed to the rows parsed.
const self = `--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
1,000,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                 file:function
--------------------------------------------------------------------------------
  300,000 (30.00%)  ???:0x0000000028019740 [???]
  200,000 (20.00%)  ???:0x0000000028019800 [???]
  150,000 (15.00%)  ???:Builtins_StringAdd_CheckNone [/usr/bin/node]
  100,000 (10.00%)  ???:v8::internal::(anonymous namespace)::Invoke(v8::internal::Isolate*, v8::internal::(anonymous namespace)::InvokeParams const&) [/usr/bin/node]
  100,000 (10.00%)  ???:llhttp__internal__run [/usr/bin/node]
   50,000 ( 5.00%)  ???:node::http_parser::Parser::on_headers_complete() [/usr/bin/node]
   50,000 ( 5.00%)  ./malloc/./malloc/malloc.c:_int_free [/usr/lib/x86_64-linux-gnu/libc.so.6]
   50,000 ( 5.00%)  ???:0x0000000099999999 [???]
`;
const inclusive = `1,000,000 (100.0%)  PROGRAM TOTALS
  400,000 (40.00%)  ???:v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags) [/usr/bin/node]
`;
// A code object freed and its address reused: the later line names what ran.
const perfMap = `28019700 100 JS:*old file:///a.ts:1:1
28019740 80 JS:*'PendingRequest file:///work/main/sidecar/protocols/wire/upstream-pool.ts:117:14
28019800 40 RegExp.> src: '^x$' flags: ''
`;

describe('bench instruction summary (callgrind)', () => {
  it('names JIT code from the perf map, the latest entry winning where code was replaced', () => {
    const map = parsePerfMap(perfMap);
    expect(jitName(map, 0x28019740)).toContain('PendingRequest');
    expect(jitName(map, 0x28019710)).toBe('JS:*old file:///a.ts:1:1');
    expect(jitName(map, 0x28019850)).toBeUndefined();
  });

  it('gives instructions per request by symbol and by category, GC from the inclusive view', () => {
    const s = summarizeInstructions(self, inclusive, perfMap, 100);
    expect(s.perRequest).toBe(10_000);
    expect(s.gcPerRequest).toBe(4_000);
    expect(s.bySymbol[0]).toEqual(["JS:*'PendingRequest file:///work/main/sidecar/protocols/wire/upstream-pool.ts:117:14", 3_000]);
    expect(new Map(s.bySymbol).get('v8::internal::(anonymous namespace)::Invoke')).toBe(1_000);
    expect(new Map(s.bySymbol).get('(unnamed JIT code)')).toBe(500);
    const byCategory = new Map(s.byCategory);
    expect(byCategory.get('JavaScript (JIT)')).toBe(5_500);
    expect(byCategory.get('V8 builtins')).toBe(1_500);
    expect(byCategory.get('V8 runtime and GC')).toBe(1_000);
    expect(byCategory.get('llhttp')).toBe(1_000);
    expect(byCategory.get('node and libuv')).toBe(500);
    expect(byCategory.get('libc')).toBe(500);
  });

  it('sorts symbols into categories', () => {
    expect(categorize('JS:+run file:///x.ts:1:1')).toBe('JavaScript (JIT)');
    expect(categorize('Builtins_KeyedLoadIC_Megamorphic')).toBe('V8 builtins');
    expect(categorize('heap::base::Stack::SetMarkerAndCallbackImpl')).toBe('V8 runtime and GC');
    expect(categorize('uv__io_poll')).toBe('node and libuv');
    expect(categorize('something else')).toBe('other');
  });
});
