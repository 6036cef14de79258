import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type KubernetesObject,
  type V1Secret,
} from '@kubernetes/client-node';
import { inject } from 'vitest';
import { projectRoot } from '../../core/project-root.js';
import { runOperator, type OperatorOptions, type RunningOperator } from '../../operator/main.js';
import type { CalIntegration, MetaPixel, StripeIntegration } from '../../operator/resources.js';
import { silentLogger } from '../../operator/runtime/index.js';
import { createTestNamespace, createTestSchema, kubeConfig } from '../env/context.js';

const run = promisify(execFile);
export const group = 'tally.dev';
export const version = 'v1alpha1';
const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * Kubernetes access as the operator's service account, authenticated with a client certificate signed
 * by the test CA and authorised only by charts/tally/templates/operator-rbac.yaml (applied for `opsNs`):
 * a verb missing from the chart fails the test.
 */
export async function operatorKubeConfig(opsNs: string): Promise<KubeConfig> {
  const admin = kubeConfig();
  const pki = path.join(path.dirname(inject('kubeconfigPath')), 'pki');
  if (!existsSync(path.join(pki, 'ca.key'))) {
    throw new Error(
      `no test CA key in ${pki}: the operator tests need the control plane the test setup starts`,
    );
  }
  await applyRbac(admin, opsNs);
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-op-cert-'));
  try {
    const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
    await openssl(
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-subj',
      `/CN=system:serviceaccount:${opsNs}:tally-operator`,
      '-keyout',
      'op.key',
      '-out',
      'op.csr',
    );
    await openssl(
      'x509',
      '-req',
      '-in',
      'op.csr',
      '-CA',
      path.join(pki, 'ca.crt'),
      '-CAkey',
      path.join(pki, 'ca.key'),
      '-CAcreateserial',
      '-CAserial',
      path.join(dir, 'ca.srl'),
      '-days',
      '1',
      '-out',
      'op.crt',
    );
    const [cert, key] = await Promise.all([
      readFile(path.join(dir, 'op.crt')),
      readFile(path.join(dir, 'op.key')),
    ]);
    const cluster = admin.getCurrentCluster()!;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'test', server: cluster.server, caData: cluster.caData, skipTLSVerify: false }],
      users: [{ name: 'tally-operator', certData: cert.toString('base64'), keyData: key.toString('base64') }],
      contexts: [{ name: 'test', cluster: 'test', user: 'tally-operator' }],
      currentContext: 'test',
    });
    return kc;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The chart's RBAC with its namespace replaced and cluster-scoped names made unique per test file. */
async function applyRbac(admin: KubeConfig, opsNs: string): Promise<void> {
  const text = await readFile(path.join(projectRoot(), 'charts/tally/templates/operator-rbac.yaml'), 'utf8');
  const custom = admin.makeApiClient(CustomObjectsApi);
  const core = admin.makeApiClient(CoreV1Api);
  for (const doc of yaml.loadAll(text) as KubernetesObject[]) {
    const obj = JSON.parse(
      JSON.stringify(doc).replaceAll('"tally-system"', JSON.stringify(opsNs)),
    ) as KubernetesObject & {
      roleRef?: { kind: string; name: string };
    };
    const clusterScoped = obj.kind === 'ClusterRole' || obj.kind === 'ClusterRoleBinding';
    if (clusterScoped) obj.metadata!.name = `tally-operator-${opsNs}`;
    if (obj.roleRef?.kind === 'ClusterRole') obj.roleRef.name = `tally-operator-${opsNs}`;
    if (obj.kind === 'ServiceAccount') {
      await core
        .createNamespacedServiceAccount({ namespace: opsNs, body: obj })
        .catch((err: { code?: number }) => {
          if (err.code !== 409) throw err;
        });
      continue;
    }
    const plural = `${obj.kind!.toLowerCase()}s`;
    const params = {
      group: 'rbac.authorization.k8s.io',
      version: 'v1',
      plural,
      name: obj.metadata!.name!,
      body: obj,
      fieldManager: 'tally-test',
      force: true,
    };
    if (clusterScoped) await custom.patchClusterCustomObject(params, ssa);
    else await custom.patchNamespacedCustomObject({ ...params, namespace: opsNs }, ssa);
  }
}

export interface TestOperator extends RunningOperator {
  opsNs: string;
  dir: string;
}

/** Runs the operator in this test process, as its service account, with the local pipeline on its own schema. */
export async function startOperator(
  opsNs: string,
  watchNamespace: string,
  extra: Partial<OperatorOptions> & { databaseUrl?: string } = {},
): Promise<TestOperator> {
  const kc = await operatorKubeConfig(opsNs);
  const dir = extra.localDir ?? (await mkdtemp(path.join(tmpdir(), 'tally-operator-')));
  const databaseUrl = extra.databaseUrl ?? (await createTestSchema('op')).url;
  const op = await runOperator({
    kubeConfig: kc,
    namespace: opsNs,
    watchNamespace,
    pipeline: 'local',
    localDir: dir,
    localDatabaseUrl: databaseUrl,
    cliPath: path.join(projectRoot(), 'dist', 'cli', 'tally.js'),
    adminPort: 0,
    statsRefreshMs: 1_000,
    leaseDurationMs: 4_000,
    renewDeadlineMs: 3_000,
    retryPeriodMs: 500,
    log: process.env.OPERATOR_TEST_LOGS ? undefined : silentLogger,
    ...extra,
  });
  return { ...op, opsNs, dir };
}

export async function operatorNamespaces(prefix: string): Promise<{ ns: string; opsNs: string }> {
  return { ns: await createTestNamespace(prefix), opsNs: await createTestNamespace(`${prefix}-ops`) };
}

type Plural = 'stripeintegrations' | 'calintegrations' | 'metapixels';
const kinds: Record<Plural, string> = {
  stripeintegrations: 'StripeIntegration',
  calintegrations: 'CalIntegration',
  metapixels: 'MetaPixel',
};

/** Admin-side access to the resources, as a person with kubectl would have. */
export function resources(namespace: string) {
  const kc = kubeConfig();
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const api = {
    async apply(plural: Plural, name: string, spec: object, metadata: Record<string, unknown> = {}) {
      return custom.patchNamespacedCustomObject(
        {
          group,
          version,
          namespace,
          plural,
          name,
          body: {
            apiVersion: `${group}/${version}`,
            kind: kinds[plural],
            metadata: { name, namespace, ...metadata },
            spec,
          },
          fieldManager: 'kubectl',
          force: true,
        },
        ssa,
      ) as Promise<KubernetesObject>;
    },
    async get<T = StripeIntegration | CalIntegration | MetaPixel>(
      plural: Plural,
      name: string,
    ): Promise<T | undefined> {
      try {
        return (await custom.getNamespacedCustomObject({ group, version, namespace, plural, name })) as T;
      } catch (err) {
        if ((err as { code?: number }).code === 404) return undefined;
        throw err;
      }
    },
    async annotate(plural: Plural, name: string, annotations: Record<string, string>): Promise<void> {
      await custom.patchNamespacedCustomObject(
        { group, version, namespace, plural, name, body: { metadata: { annotations } } },
        merge,
      );
    },
    async delete(plural: Plural, name: string): Promise<void> {
      await custom.deleteNamespacedCustomObject({ group, version, namespace, plural, name });
    },
    async putSecret(name: string, data: Record<string, string>) {
      return core.patchNamespacedSecret(
        {
          name,
          namespace,
          body: { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, stringData: data },
          fieldManager: 'kubectl',
          force: true,
        },
        ssa,
      );
    },
    async secret(name: string, ns = namespace): Promise<V1Secret | undefined> {
      try {
        return await core.readNamespacedSecret({ name, namespace: ns });
      } catch (err) {
        if ((err as { code?: number }).code === 404) return undefined;
        throw err;
      }
    },
    async deleteSecret(name: string) {
      return core.deleteNamespacedSecret({ name, namespace });
    },
    async events(name: string) {
      const list = await core.listNamespacedEvent({
        namespace,
        fieldSelector: `involvedObject.name=${name}`,
      });
      return list.items;
    },
  };
  return api;
}

export const decode = (s: V1Secret | undefined, key: string) =>
  s?.data?.[key] === undefined ? undefined : Buffer.from(s.data[key], 'base64').toString('utf8');

export function condition(
  obj:
    | { status?: { conditions?: { type: string; status: string; reason: string; message: string }[] } }
    | undefined,
  type: string,
) {
  return obj?.status?.conditions?.find((c) => c.type === type);
}

/** Polls until `probe` returns a value (not undefined/false), or fails with the last value seen. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      last = v;
    } catch (err) {
      last = err instanceof Error ? err.message : err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Distinct projectRoot check so a missing build fails with a clear message. */
export function assertBuilt(): void {
  if (!existsSync(path.join(projectRoot(), 'dist', 'cli', 'tally.js')))
    throw new Error('dist/cli/tally.js is missing: run `npm run build` first (npm test does)');
}
