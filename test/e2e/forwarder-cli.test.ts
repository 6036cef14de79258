import yaml from 'js-yaml';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../core/net.js';
import { createTestSchema } from '../env/context.js';
import { runTally } from './tally-cli.js';

describe('`tally forwarder` from the command line', () => {
  it('runs from a config file, reports its pixels, stops on SIGTERM, and re-drives from the CLI', async () => {
    const { pool, url } = await createTestSchema('fwdcli');
    const dir = await mkdtemp(path.join(tmpdir(), 'tally-fwd-'));
    const config = path.join(dir, 'tally.yaml');
    const adminPort = await freePort();
    await writeFile(
      config,
      yaml.dump({
        database: { url },
        // Nothing listens there: the pixel has nothing to send anyway.
        forwarder: { host: '127.0.0.1', adminPort, graphBaseUrl: 'http://127.0.0.1:9' },
        metaPixels: [
          { namespace: 'growth', name: 'web', pixelId: '123456789012345', accessToken: 'EAAtest' },
        ],
      }),
    );
    const run = runTally(['forwarder', '--config', config]);
    try {
      const admin = `http://127.0.0.1:${adminPort}`;
      await expect
        .poll(async () => (await fetch(`${admin}/readyz`).catch(() => undefined))?.status, {
          timeout: 30_000,
        })
        .toBe(200);
      const pixels = await (await fetch(`${admin}/api/v1/pixels`)).json();
      expect(JSON.stringify(pixels)).toContain('growth/web');
      expect(JSON.stringify(pixels)).not.toContain('EAAtest');
    } finally {
      run.child.kill('SIGTERM');
    }
    expect(await run.exited).toBe(0);

    const redrive = runTally(['forwarder', 'redrive', '--config', config, '--pixel', 'growth/web']);
    expect(await redrive.exited).toBe(0);
    expect(redrive.output()).toContain('re-driven 0 dead-lettered events');
    await pool.end();
  });
});
