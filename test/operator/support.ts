import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type KubernetesObject,
  type V1PolicyRule,
  type V1Secret,
} from '@kubernetes/client-node';
import { projectRoot } from '../../core/project-root.js';
import { runOperator, type OperatorOptions, type RunningOperator } from '../../operator/main.js';
import type { CalIntegration, MetaPixel, StripeIntegration } from '../../operator/resources.js';
import { silentLogger } from '../../operator/runtime/index.js';
import { createTestNamespace, createTestSchema, kubeConfig } from '../env/context.js';
import { serviceAccountKubeConfig } from '../env/service-account.js';

export const group = 'tally.dev';
export const version = 'v1alpha1';
const ssa = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/**
 * Kubernetes access as the operator's service account, authenticated with a client certificate signed
 * by the test CA and authorised only by the chart's rules, charts/tally/rbac/operator.yaml (bound for
 * `opsNs`): a verb missing from the chart fails the test.
 */
export async function operatorKubeConfig(opsNs: string): Promise<KubeConfig> {
  await applyRbac(kubeConfig(), opsNs);
  return serviceAccountKubeConfig(opsNs, 'tally-operator');
}

/**
 * The chart's RBAC as templates/operator-rbac.yaml renders it for the release namespace `opsNs`: the
 * `watched` rules in a ClusterRole (named per test file), the `own` rules in a Role in `opsNs`.
 */
async function applyRbac(admin: KubeConfig, opsNs: string): Promise<void> {
  const file = path.join(projectRoot(), 'charts/tally/rbac/operator.yaml');
  const rules = yaml.load(await readFile(file, 'utf8')) as { watched: V1PolicyRule[]; own: V1PolicyRule[] };
  const custom = admin.makeApiClient(CustomObjectsApi);
  const core = admin.makeApiClient(CoreV1Api);
  await core
    .createNamespacedServiceAccount({ namespace: opsNs, body: { metadata: { name: 'tally-operator' } } })
    .catch((err: { code?: number }) => {
      if (err.code !== 409) throw err;
    });
  const rbac = 'rbac.authorization.k8s.io';
  const subjects = [{ kind: 'ServiceAccount', name: 'tally-operator', namespace: opsNs }];
  const clusterName = `tally-operator-${opsNs}`;
  const objects = [
    { kind: 'ClusterRole', metadata: { name: clusterName }, rules: rules.watched },
    {
      kind: 'ClusterRoleBinding',
      metadata: { name: clusterName },
      roleRef: { apiGroup: rbac, kind: 'ClusterRole', name: clusterName },
      subjects,
    },
    { kind: 'Role', metadata: { name: 'tally-operator', namespace: opsNs }, rules: rules.own },
    {
      kind: 'RoleBinding',
      metadata: { name: 'tally-operator', namespace: opsNs },
      roleRef: { apiGroup: rbac, kind: 'Role', name: 'tally-operator' },
      subjects,
    },
  ];
  for (const obj of objects) {
    const params = {
      group: rbac,
      version: 'v1',
      plural: `${obj.kind.toLowerCase()}s`,
      name: obj.metadata.name,
      body: { apiVersion: `${rbac}/v1`, ...obj },
      fieldManager: 'tally-test',
      force: true,
    };
    if (obj.kind.startsWith('Cluster')) await custom.patchClusterCustomObject(params, ssa);
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
