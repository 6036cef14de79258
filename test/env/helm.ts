import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCacheScript } from './binaries.js';
import { progressReporter } from './progress.js';
import type { RunResult } from './run.js';

export interface HelmTools {
  helm: string;
  /** The prometheus-operator CRDs (ServiceMonitor, PrometheusRule), for dry runs of the chart. */
  monitoringCrds: string[];
  source: string;
}

let resolved: Promise<HelmTools> | undefined;

/**
 * helm (built from the Go module proxy, helm.sh/helm/v4) and the prometheus-operator CRDs, from
 * Tally's version-keyed cache; test/env/build-helm.sh builds them on a machine's first run.
 */
export function resolveHelm(): Promise<HelmTools> {
  resolved ??= (async () => {
    const progress = progressReporter('preparing helm');
    const dir = await runCacheScript('build-helm.sh', 'building helm', (line) =>
      progress.update(line),
    ).finally(() => progress.done());
    const crds = path.join(dir, 'crds');
    const files = (await readdir(crds)).filter((f) => f.endsWith('.yaml')).sort();
    return {
      helm: path.join(dir, 'helm'),
      monitoringCrds: files.map((f) => path.join(crds, f)),
      source: dir,
    };
  })();
  return resolved;
}

// helm keeps a cache, configuration and plugins under HOME; tests use a folder of their own.
let helmHome: string | undefined;

/** Runs helm to completion; never throws on a non-zero exit. */
export async function helm(args: string[]): Promise<RunResult> {
  const { helm: bin } = await resolveHelm();
  helmHome ??= mkdtempSync(path.join(tmpdir(), 'tally-helm-home-'));
  const env = {
    ...process.env,
    HELM_CACHE_HOME: path.join(helmHome, 'cache'),
    HELM_CONFIG_HOME: path.join(helmHome, 'config'),
    HELM_DATA_HOME: path.join(helmHome, 'data'),
  };
  return new Promise((resolve, reject) => {
    execFile(bin, args, { env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') return reject(new Error(`helm: ${err.message}`));
      resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
    });
  });
}
