import yaml from 'js-yaml';
import { mkdtemp, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { runIngest, type RunningIngest } from '../../ingest/main.js';
import { createTestSchema } from '../env/context.js';

export const STRIPE_SECRET = 'whsec_test_acme_0123456789abcdef';
export const CAL_SECRET = 'cal-secret-0123456789abcdef';

export function baseConfig(databaseUrl: string) {
  return {
    database: { url: databaseUrl },
    stripe: [{ namespace: 'growth', name: 'acme', signingSecrets: [STRIPE_SECRET] }],
    cal: [{ namespace: 'growth', name: 'demo-calls', webhookSecrets: [CAL_SECRET] }],
    metaPixels: [{ namespace: 'growth', name: 'website-pixel', pixelId: '123456789012345' }],
  };
}

export interface IngestUnderTest extends RunningIngest {
  pool: pg.Pool;
  configPath: string;
  /** Replaces the config file atomically, as Kubernetes does with a Secret volume. */
  writeConfig(config: unknown): Promise<void>;
  post(
    route: string,
    body: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; body: Record<string, unknown> }>;
  admin<T = Record<string, unknown>>(route: string): Promise<{ status: number; body: T }>;
  metrics(): Promise<string>;
}

/** A real ingest process core (in this test process) on loopback, with its own PostgreSQL schema. */
export async function startIngest(
  configure: (base: ReturnType<typeof baseConfig>) => object = (b) => b,
): Promise<IngestUnderTest> {
  const { pool, url } = await createTestSchema('ingest');
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-ingest-'));
  const configPath = path.join(dir, 'tally.yaml');
  const writeConfig = async (config: unknown) => {
    const tmp = `${configPath}.tmp`;
    await writeFile(tmp, yaml.dump(config));
    await rename(tmp, configPath);
  };
  await writeConfig(configure(baseConfig(url)));
  const ingest = await runIngest({
    configPath,
    dataDir: path.join(dir, 'pg'),
    host: '127.0.0.1',
    port: 0,
    adminPort: 0,
  });
  // Ready means migrated and reachable.
  for (let i = 0; i < 100; i++) {
    const res = await fetch(`${ingest.adminUrl}/readyz`);
    if (res.ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    ...ingest,
    pool,
    configPath,
    writeConfig,
    async post(route, body, headers) {
      const res = await fetch(`${ingest.webhookUrl}${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    },
    async admin<T>(route: string) {
      const res = await fetch(`${ingest.adminUrl}${route}`);
      return { status: res.status, body: (await res.json()) as T };
    },
    async metrics() {
      return (await fetch(`${ingest.adminUrl}/metrics`)).text();
    },
    async close() {
      await ingest.close();
      await pool.end();
    },
  };
}

export { sample } from '../env/metrics.js';
