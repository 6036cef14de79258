import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/project-root.js';

describe('a process that used the embedded PostgreSQL', () => {
  it('exits with its own exit code: the package’s exit hooks do not turn a failure into success', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'tally-exit-'));
    await chmod(dir, 0o755);
    try {
      const module = pathToFileURL(path.join(projectRoot(), 'dist/core/db/embedded-postgres.js')).href;
      // Starts and stops a server, then ends by running out of work with exit code 3, as a failed
      // command or test run does; async-exit-hook's 'beforeExit' handler used to exit 0 instead.
      const script = `
        const { startEmbeddedPostgres } = await import(${JSON.stringify(module)});
        const db = await startEmbeddedPostgres(${JSON.stringify(dir)});
        await db.stop();
        process.exitCode = 3;`;
      const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(run.stderr).toBe('');
      expect(run.status).toBe(3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
