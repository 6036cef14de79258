import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { runCommand, type RunResult } from './run.js';

export function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(inject('kubeconfigPath'));
  return kc;
}

/** A fresh namespace for one test file. Namespaces are never reused: without controllers they never finish deleting. */
export async function createTestNamespace(prefix = 't'): Promise<string> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  await kubeConfig()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name, labels: { 'tally.dev/test': 'true' } } } });
  return name;
}

/** Runs the kubectl that matches the test API server, with the test kubeconfig; never throws on exit codes. */
export function kubectl(args: string[], stdin?: string): Promise<RunResult> {
  return runCommand(inject('kubectlPath'), ['--kubeconfig', inject('kubeconfigPath'), ...args], stdin);
}

/**
 * A schema of its own for one test file in the shared PostgreSQL; every pooled connection uses it
 * through search_path.
 */
export async function createTestSchema(
  prefix = 't',
): Promise<{ pool: pg.Pool; schema: string; url: string }> {
  const schema = `${prefix}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: inject('databaseUrl') });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const url = new URL(inject('databaseUrl'));
  url.searchParams.set('options', `-c search_path=${schema}`);
  const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
  pool.on('error', () => {});
  return { pool, schema, url: url.toString() };
}
