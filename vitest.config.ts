import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 60_000,
    // Components log JSON; in tests only warnings and errors are worth reading.
    env: { LOG_LEVEL: 'warn' },
    hookTimeout: 120_000,
    // The two cores are shared with kube-apiserver, etcd and PostgreSQL.
    maxWorkers: 2,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['{cli,core,operator,ingest,forwarder}/**/*.test.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          // One control plane and one PostgreSQL per run, shared by every test file.
          globalSetup: ['test/env/global-setup.ts'],
        },
      },
    ],
  },
});
