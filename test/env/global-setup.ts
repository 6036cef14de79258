import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { TestProject } from 'vitest/node';
import { resolveBinaries } from './binaries.js';
import { ControlPlane } from './control-plane.js';
import { installCustomResourceDefinitions } from './install-crds.js';
import { startDatabase, type Database } from '../../core/db/embedded-postgres.js';
import { progressReporter } from './progress.js';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfigPath: string;
    kubectlPath: string;
    databaseUrl: string;
  }
}

/**
 * One real control plane and one PostgreSQL for the whole run; each test file then works in its own
 * namespace and schema (test/env/context.ts). USE_EXISTING_CLUSTER=true with KUBECONFIG runs the tests
 * against that cluster instead (envtest's convention); DATABASE_URL likewise replaces the embedded server.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-test-'));
  // PostgreSQL runs as the `postgres` user when the tests run as root: it must be able to enter the folder.
  await chmod(dir, 0o755);
  const timings: string[] = [];
  const time = async <T>(what: string, step: () => Promise<T>): Promise<T> => {
    const start = Date.now();
    const result = await step();
    timings.push(`${what} ${((Date.now() - start) / 1000).toFixed(1)}s`);
    return result;
  };

  const progress = progressReporter('preparing kube-apiserver and etcd');
  const binaries = await time('binaries', () => resolveBinaries((line) => progress.update(line))).finally(
    () => progress.done(),
  );

  let plane: ControlPlane | undefined;
  let db: Database | undefined;
  const teardown = async () => {
    await db?.stop();
    await plane?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  const existing = process.env.USE_EXISTING_CLUSTER === 'true' ? process.env.KUBECONFIG : undefined;
  let kubeconfigPath: string;
  try {
    if (existing) {
      kubeconfigPath = existing.split(path.delimiter)[0] ?? existing;
    } else {
      plane = await time('control plane', () =>
        ControlPlane.start({ dir: path.join(dir, 'cluster'), binaries, contextName: 'tally-test' }),
      );
      kubeconfigPath = plane.kubeconfigPath;
    }
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    await time('CRDs', () => installCustomResourceDefinitions(kc));
    db = await time('PostgreSQL', () => startDatabase(path.join(dir, 'postgres')));
  } catch (err) {
    await teardown();
    throw err;
  }

  console.log(
    `test environment: ${existing ? `existing cluster (${kubeconfigPath})` : `kube-apiserver ${plane?.server}`}, ` +
      `binaries from ${binaries.source}, PostgreSQL from ${db.source} [${timings.join(', ')}]`,
  );
  project.provide('kubeconfigPath', kubeconfigPath);
  project.provide('kubectlPath', binaries.kubectl);
  project.provide('databaseUrl', db.url);

  return teardown;
}
