import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { projectRoot } from '../../core/project-root.js';

export interface ControlPlaneBinaries {
  kubeApiserver: string;
  etcd: string;
  kubectl: string;
  /** Where they came from, for the log line people read when something is off. */
  source: string;
}

/**
 * Finds kube-apiserver, etcd and kubectl. In order: envtest's own variables (TEST_ASSET_* per binary,
 * then KUBEBUILDER_ASSETS), then Tally's version-keyed build cache, building it from the Go module
 * proxy on the first run of a machine. `onProgress` receives the build's output lines.
 */
export async function resolveBinaries(
  onProgress: (line: string) => void = () => {},
): Promise<ControlPlaneBinaries> {
  const assets = process.env.KUBEBUILDER_ASSETS;
  const fromEnv = {
    kubeApiserver: process.env.TEST_ASSET_KUBE_APISERVER ?? (assets && path.join(assets, 'kube-apiserver')),
    etcd: process.env.TEST_ASSET_ETCD ?? (assets && path.join(assets, 'etcd')),
    kubectl: process.env.TEST_ASSET_KUBECTL ?? (assets && path.join(assets, 'kubectl')),
  };
  if (fromEnv.kubeApiserver && fromEnv.etcd && fromEnv.kubectl) {
    const found = { kubeApiserver: fromEnv.kubeApiserver, etcd: fromEnv.etcd, kubectl: fromEnv.kubectl };
    await Promise.all(Object.values(found).map(assertExecutable));
    return { ...found, source: assets ? `KUBEBUILDER_ASSETS=${assets}` : 'TEST_ASSET_* variables' };
  }
  const dir = await runCacheScript('build-control-plane.sh', 'building the control plane', onProgress);
  return {
    kubeApiserver: fromEnv.kubeApiserver ?? path.join(dir, 'kube-apiserver'),
    etcd: fromEnv.etcd ?? path.join(dir, 'etcd'),
    kubectl: fromEnv.kubectl ?? path.join(dir, 'kubectl'),
    source: dir,
  };
}

/**
 * Runs one of test/env's build-into-the-cache scripts and resolves with the folder it prints on its
 * last line; stderr lines go to `onProgress`, and the last 30 of them into the error on failure.
 */
export async function runCacheScript(
  name: string,
  what: string,
  onProgress: (line: string) => void,
): Promise<string> {
  const script = path.join(projectRoot(), 'test', 'env', name);
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    const tail: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    let partial = '';
    child.stderr.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > 30) tail.shift();
        onProgress(line);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const dir = stdout.trim().split('\n').pop();
      if (code === 0 && dir) resolve(dir);
      else reject(new Error(`${what} failed (exit ${code}):\n${tail.join('\n')}`));
    });
  });
}

export async function assertExecutable(file: string): Promise<void> {
  await access(file, constants.X_OK).catch(() => {
    throw new Error(`${file} is not an executable file (check KUBEBUILDER_ASSETS / TEST_ASSET_*)`);
  });
}
