/**
 * Instructions per request from a callgrind dump of the proxy's main thread: the yardstick that does
 * not move with the host's load at all (valgrind counts instructions, not time). JIT code has no
 * symbols in callgrind; node's `--perf-basic-prof` map names it. Instructions are not time: simple
 * loops run several per cycle and cache-missing runtime code less than one, so compare like with like.
 */
export interface PerfMapEntry {
  readonly start: number;
  readonly size: number;
  readonly name: string;
  /** Line in the map: code freed and replaced at the same address appears later, and wins. */
  readonly order: number;
}

export function parsePerfMap(text: string): PerfMapEntry[] {
  const entries: PerfMapEntry[] = [];
  for (const line of text.split('\n')) {
    const match = /^([0-9a-f]+) ([0-9a-f]+) (.+)$/i.exec(line.trim());
    if (match) entries.push({ start: parseInt(match[1]!, 16), size: parseInt(match[2]!, 16), name: match[3]!, order: entries.length });
  }
  return entries.sort((a, b) => a.start - b.start);
}

/** The latest map entry covering `address`, or undefined. */
export function jitName(map: readonly PerfMapEntry[], address: number): string | undefined {
  let best: PerfMapEntry | undefined;
  // Entries overlap only where code was freed and reused; scan back from the last start <= address.
  let lo = 0;
  let hi = map.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (map[mid]!.start <= address) lo = mid + 1;
    else hi = mid - 1;
  }
  for (let i = hi; i >= 0 && i > hi - 64; i--) {
    const entry = map[i]!;
    if (address < entry.start + entry.size && (best === undefined || entry.order > best.order)) best = entry;
  }
  return best?.name;
}

export type Category = 'JavaScript (JIT)' | 'V8 builtins' | 'V8 runtime and GC' | 'llhttp' | 'node and libuv' | 'libc' | 'other';

export function categorize(symbol: string): Category {
  if (symbol.startsWith('JS:') || symbol.startsWith('RegExp') || symbol === '(unnamed JIT code)') return 'JavaScript (JIT)';
  if (symbol.startsWith('Builtins_') || symbol.startsWith('Builtin:')) return 'V8 builtins';
  if (symbol.includes('llhttp')) return 'llhttp';
  if (/\bv8::|heap::|cppgc::/.test(symbol)) return 'V8 runtime and GC';
  if (/\bnode::|\buv_|\buv__/.test(symbol)) return 'node and libuv';
  if (/libc\.so|\bmalloc|\bmemcpy|\bmemmove|\bmemset|\bmemchr|_int_free|_int_malloc/.test(symbol)) return 'libc';
  return 'other';
}

export interface InstructionSummary {
  readonly requests: number;
  /** Main thread, per request. */
  readonly perRequest: number;
  /** Main-thread garbage collection (Heap::CollectGarbage and below), per request. */
  readonly gcPerRequest: number;
  readonly byCategory: ReadonlyArray<readonly [Category, number]>;
  /** Self instructions per request by symbol, largest first. */
  readonly bySymbol: ReadonlyArray<readonly [string, number]>;
}

const LINE = /^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$/;

/** Rows of `callgrind_annotate` output: [instructions, file:function]. */
function rows(annotated: string): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (const line of annotated.split('\n')) {
    const match = LINE.exec(line);
    if (match) out.push([Number(match[1]!.replace(/,/g, '')), match[2]!]);
  }
  return out;
}

/** A readable symbol: JIT addresses named from the map, `???:` and binary paths dropped, arguments cut. */
function symbolOf(raw: string, map: readonly PerfMapEntry[]): string {
  const jit = /^\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$/i.exec(raw);
  if (jit) return jitName(map, parseInt(jit[1]!, 16)) ?? '(unnamed JIT code)';
  const name = raw.replace(/^\?\?\?:/, '').replace(/ \[[^\]]*\]$/, '');
  // C++ signatures: keep the qualified name, not the argument list ("(anonymous namespace)" is part of names).
  const paren = name.search(/\((?!anonymous namespace\))/);
  return paren > 0 ? name.slice(0, paren) : name;
}

/**
 * `selfAnnotated` and `inclusiveAnnotated` are `callgrind_annotate --threshold=100` of the main thread's
 * dump without and with `--inclusive=yes`.
 */
export function summarizeInstructions(selfAnnotated: string, inclusiveAnnotated: string, perfMap: string, requests: number): InstructionSummary {
  const map = parsePerfMap(perfMap);
  const totalRow = rows(selfAnnotated).find(([, name]) => name.startsWith('PROGRAM TOTALS'));
  const total = totalRow?.[0] ?? 0;
  const gcRow = rows(inclusiveAnnotated).find(([, name]) => /v8::internal::Heap::CollectGarbage\(/.test(name));
  const bySymbol = new Map<string, number>();
  const byCategory = new Map<Category, number>();
  for (const [count, raw] of rows(selfAnnotated)) {
    if (raw.startsWith('PROGRAM TOTALS')) continue;
    const symbol = symbolOf(raw, map);
    bySymbol.set(symbol, (bySymbol.get(symbol) ?? 0) + count / requests);
    const category = categorize(symbol);
    byCategory.set(category, (byCategory.get(category) ?? 0) + count / requests);
  }
  const sorted = <K>(m: Map<K, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return { requests, perRequest: total / requests, gcPerRequest: (gcRow?.[0] ?? 0) / requests, byCategory: sorted(byCategory), bySymbol: sorted(bySymbol) };
}
