import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests bind real loopback ports; a little parallelism keeps CI fast on 2 cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});
