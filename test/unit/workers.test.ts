import { describe, expect, it } from 'vitest';
import { validateConfig } from '../../sidecar/config/load.ts';
import { MAX_WORKERS, workerCount } from '../../sidecar/workers.ts';

const base = { service: { name: 'app', port: 8080 } };

describe('workers setting', () => {
  it('defaults to one process', () => {
    expect(validateConfig(base, 'meshlet.yaml').workers).toBe(1);
  });

  it('accepts a number or "auto", which means one per core (capped)', () => {
    expect(validateConfig({ ...base, workers: 'auto' }, 'meshlet.yaml').workers).toBe('auto');
    expect(workerCount('auto', 8)).toBe(8);
    expect(workerCount('auto', 500)).toBe(MAX_WORKERS);
    expect(workerCount(3, 8)).toBe(3);
  });

  it.each([0, 1.5, 'many', MAX_WORKERS + 1])('rejects %s naming the field', (value) => {
    expect(() => validateConfig({ ...base, workers: value }, 'meshlet.yaml')).toThrow(/workers/);
  });
});
