import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, isMeshError, meshError, MeshletError } from '../../sidecar/errors.ts';

const DOC = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
const specs = Object.entries(ErrorCodes);

/** Rows of the docs table: code -> { status, reason }. */
function documentedRows(): Map<string, { status: number; reason: string }> {
  const rows = new Map<string, { status: number; reason: string }>();
  for (const match of DOC.matchAll(/^\| `(MESH_ERR_[A-Z0-9_]+)` \| (\d{3}) \| `([a-z0-9_]+)` \|/gm)) rows.set(match[1]!, { status: Number(match[2]), reason: match[3]! });
  return rows;
}

describe('the error registry', () => {
  it('never reuses a code', () => {
    const codes = specs.map(([, s]) => s.code);
    expect(codes.filter((c, i) => codes.indexOf(c) !== i)).toEqual([]);
  });

  it('never reuses a reason (the x-meshlet-error value)', () => {
    const reasons = specs.map(([, s]) => s.reason);
    expect(reasons.filter((r, i) => reasons.indexOf(r) !== i)).toEqual([]);
  });

  it('names every code MESH_ERR_<KEY> with a valid HTTP status and a header-safe reason', () => {
    for (const [key, s] of specs) {
      expect(s.code, key).toBe(`MESH_ERR_${key}`);
      expect(s.status, key).toBeGreaterThanOrEqual(400);
      expect(s.status, key).toBeLessThan(600);
      expect(s.reason, key).toMatch(/^[a-z0-9_]+$/);
    }
  });

  it('documents every code in docs/errors.md with the same status and reason', () => {
    const rows = documentedRows();
    for (const [key, s] of specs) expect(rows.get(s.code), `${key} missing or different in docs/errors.md`).toEqual({ status: s.status, reason: s.reason });
  });

  it('documents no code that does not exist', () => {
    const known = new Set(specs.map(([, s]) => s.code));
    expect([...documentedRows().keys()].filter((code) => !known.has(code))).toEqual([]);
  });

  it('builds typed errors that keep their cause', () => {
    const cause = new Error('ECONNREFUSED');
    const err = meshError('UPSTREAM_CONNECT', 'cannot connect to greeter@10.0.0.5:15001', cause);
    expect(err).toBeInstanceOf(MeshletError);
    expect(err).toMatchObject({ code: 'MESH_ERR_UPSTREAM_CONNECT', status: 502, reason: 'upstream_connect', cause });
    expect(isMeshError(err, 'UPSTREAM_CONNECT')).toBe(true);
    expect(isMeshError(err, 'UPSTREAM_RESET')).toBe(false);
    expect(isMeshError(cause)).toBe(false);
  });
});
