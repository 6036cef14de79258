/**
 * `npm run bench:operator`: how fast the operator turns applied resources into Ready ones, and whether it
 * then goes quiet. On a real kube-apiserver + etcd and a real ingest process (the local pipeline):
 *  1. latency: apply one CalIntegration at a time, time until status says Ready (ingest has loaded it);
 *     the baseline is a bare server-side apply + watch round trip of the same kind in the same run;
 *  2. scale: apply BENCH_RESOURCES (1,000) CalIntegrations at once, time until every one is Ready;
 *  3. idle: count the operator's API writes over the following BENCH_IDLE_SECONDS (60; target 0).
 * Targets: p95 under 2 s, 1,000 converged within 60 s, 0 writes when idle.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import { startDatabase } from '../core/db/embedded-postgres.js';
import { runOperator } from '../operator/main.js';
import { silentLogger } from '../operator/runtime/index.js';
import { resolveBinaries } from '../test/env/binaries.js';
import { ControlPlane } from '../test/env/control-plane.js';
import { installCustomResourceDefinitions } from '../test/env/install-crds.js';

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 30);
const RESOURCES = Number(process.env.BENCH_RESOURCES ?? 1000);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const NS = 'bench';
const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

type Cal = {
  metadata: { name: string; resourceVersion?: string };
  status?: { conditions?: { type: string; status: string }[] };
};

/** Resolves per name when `ready(obj)` first holds, from one watch on the namespace. */
async function watchFor(kc: KubeConfig, ready: (obj: Cal) => boolean) {
  const waiters = new Map<string, () => void>();
  const seen = new Set<string>();
  const controller = await new Watch(kc).watch(
    `/apis/tally.dev/v1alpha1/namespaces/${NS}/calintegrations`,
    {},
    (_type, obj: Cal) => {
      if (seen.has(obj.metadata.name) || !ready(obj)) return;
      seen.add(obj.metadata.name);
      waiters.get(obj.metadata.name)?.();
    },
    () => {},
  );
  return {
    until(name: string): Promise<void> {
      if (seen.has(name)) return Promise.resolve();
      return new Promise((resolve) => waiters.set(name, resolve));
    },
    get count() {
      return seen.size;
    },
    stop: () => controller.abort(),
  };
}

const isReady = (o: Cal) =>
  Boolean(o.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
};
const ms = (x: number) => `${x.toFixed(0)} ms`;

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-bench-operator-'));
  // PostgreSQL runs as the `postgres` user when the bench runs as root: it must be able to enter the folder.
  await chmod(dir, 0o755);
  const binaries = await resolveBinaries((line) => console.error(line));
  const plane = await ControlPlane.start({ dir: path.join(dir, 'cluster'), binaries, contextName: 'bench' });
  let db: Awaited<ReturnType<typeof startDatabase>> | undefined;
  let op: Awaited<ReturnType<typeof runOperator>> | undefined;
  try {
    db = await startDatabase(path.join(dir, 'postgres'));
    const kc = plane.kubeConfig();
    await installCustomResourceDefinitions(kc);
    const core = kc.makeApiClient(CoreV1Api);
    for (const name of [NS, 'tally-system']) await core.createNamespace({ body: { metadata: { name } } });
    const custom = kc.makeApiClient(CustomObjectsApi);
    const apply = (name: string, fieldManager = 'bench') =>
      custom.patchNamespacedCustomObject(
        {
          group: 'tally.dev',
          version: 'v1alpha1',
          namespace: NS,
          plural: 'calintegrations',
          name,
          body: {
            apiVersion: 'tally.dev/v1alpha1',
            kind: 'CalIntegration',
            metadata: { name, namespace: NS },
            spec: { displayName: name },
          },
          fieldManager,
          force: true,
        },
        ssa,
      );

    // Baseline: apply + see it through a watch, with no operator running.
    const seenWatch = await watchFor(kc, () => true);
    const baseline: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const t = performance.now();
      await apply(`baseline-${i}`);
      await seenWatch.until(`baseline-${i}`);
      baseline.push(performance.now() - t);
    }
    seenWatch.stop();
    for (let i = 0; i < SAMPLES; i++) {
      await custom.deleteNamespacedCustomObject({
        group: 'tally.dev',
        version: 'v1alpha1',
        namespace: NS,
        plural: 'calintegrations',
        name: `baseline-${i}`,
      });
    }

    op = await runOperator({
      kubeConfig: kc,
      namespace: 'tally-system',
      watchNamespace: NS,
      pipeline: 'local',
      localDir: path.join(dir, 'operator'),
      localDatabaseUrl: db.url,
      adminPort: 0,
      log: silentLogger,
    });
    const writes = async () =>
      (await (await fetch(`${op!.adminURL}/metrics`)).text())
        .split('\n')
        .filter((l) => l.startsWith('tally_operator_api_writes_total{'))
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const readyWatch = await watchFor(kc, isReady);

    // 1. Apply → Ready, one at a time (the first one also waits for ingest to start).
    await apply('warmup');
    await readyWatch.until('warmup');
    const latency: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const t = performance.now();
      await apply(`single-${i}`);
      await readyWatch.until(`single-${i}`);
      latency.push(performance.now() - t);
    }

    // 2. Many at once.
    const before = readyWatch.count;
    const start = performance.now();
    const names = Array.from({ length: RESOURCES }, (_, i) => `bulk-${String(i).padStart(4, '0')}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < names.length) await apply(names[next++]!);
      }),
    );
    const applied = performance.now() - start;
    await Promise.all(names.map((n) => readyWatch.until(n)));
    const converged = performance.now() - start;
    readyWatch.stop();

    // 3. Idle: nothing changes, so nothing should be written.
    await new Promise((r) => setTimeout(r, 5_000)); // let the last status refreshes land
    const w0 = await writes();
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const idleWrites = (await writes()) - w0;

    const p50 = quantile(latency, 0.5);
    const p95 = quantile(latency, 0.95);
    const b50 = quantile(baseline, 0.5);
    console.log(`
Tally operator benchmark (kube-apiserver + etcd on loopback, local ingest; ${SAMPLES} samples)
  baseline: apply + watch round trip        median ${ms(b50)}, p95 ${ms(quantile(baseline, 0.95))}
  apply → Ready (secret, config, ingest)    median ${ms(p50)}, p95 ${ms(p95)}  (${(p50 / b50).toFixed(1)}× baseline)   target p95 < 2000 ms: ${p95 < 2000 ? 'met' : 'MISSED'}
  ${RESOURCES} resources applied in ${ms(applied)}, all Ready after ${(converged / 1000).toFixed(1)} s  (${(readyWatch.count - before) / 1 >= RESOURCES ? 'all' : 'not all'} converged)   target < 60 s: ${converged < 60_000 ? 'met' : 'MISSED'}
  API writes in the following ${IDLE_SECONDS} s idle: ${idleWrites}   target 0: ${idleWrites === 0 ? 'met' : 'MISSED'}
  (operator writes in total: ${await writes()})`);
  } finally {
    await op?.close();
    await db?.stop();
    await plane.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
