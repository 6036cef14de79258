import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import yaml from 'js-yaml';
import { AppsV1Api, CoreV1Api, type V1Deployment, type V1Secret } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/project-root.js';
import type { CalIntegration } from '../../operator/resources.js';
import { createTestNamespace, kubeConfig, kubectl } from '../env/context.js';
import { helm } from '../env/helm.js';
import { startProcess, type ManagedProcess } from '../env/processes.js';
import { serviceAccountKubeConfig } from '../env/service-account.js';
import { assertBuilt, condition, eventually, resources } from '../operator/support.js';

const chart = path.join(projectRoot(), 'charts', 'tally');

/**
 * The chart installed for real (no controllers run, so nothing starts by itself), then the operator
 * run as the chart's Deployment would run it: its arguments and environment, as its ServiceAccount.
 * What it renders must be what the values say, and the chart's RBAC must be all it needs.
 */
describe('the operator as the chart runs it', () => {
  let ns: string;
  let watched: string;
  let operator: ManagedProcess;
  let dir: string;
  const apps = kubeConfig().makeApiClient(AppsV1Api);
  const core = kubeConfig().makeApiClient(CoreV1Api);
  const values = {
    // Every key given: Helm merges maps with the chart's defaults.
    ingest: {
      replicas: 3,
      resources: { requests: { cpu: '200m', memory: '150Mi' }, limits: { memory: '300Mi' } },
    },
    forwarder: {
      replicas: 1,
      resources: { requests: { cpu: '20m', memory: '100Mi' }, limits: { memory: '200Mi' } },
    },
    podSecurityContext: { runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } },
    imagePullSecrets: [{ name: 'regcred' }],
    webhook: { publicBaseUrl: 'https://hooks.example.test' },
  };

  beforeAll(async () => {
    assertBuilt();
    ns = await createTestNamespace('helm-install');
    // Watch one empty namespace: other test files' resources are not this operator's business.
    watched = await createTestNamespace('helm-install-watched');
    dir = await mkdtemp(path.join(tmpdir(), 'tally-helm-operator-'));
    const valuesFile = path.join(dir, 'values.yaml');
    await writeFile(valuesFile, yaml.dump({ ...values, operator: { watchNamespace: watched } }));
    const rendered = await helm(['template', 'tally', chart, '--namespace', ns, '-f', valuesFile]);
    expect(rendered.code, rendered.stderr).toBe(0);
    const applied = await kubectl(
      ['apply', '--server-side', '--field-manager=helm', '-f', '-'],
      rendered.stdout,
    );
    expect(applied.code, applied.stderr).toBe(0);

    const deployment = (yaml.loadAll(rendered.stdout) as V1Deployment[]).find(
      (o) => o?.kind === 'Deployment' && o.metadata?.name === 'tally-operator',
    )!;
    const container = deployment.spec!.template.spec!.containers[0]!;
    const kc = await serviceAccountKubeConfig(ns, deployment.spec!.template.spec!.serviceAccountName!);
    const kubeconfig = path.join(dir, 'kubeconfig');
    await writeFile(kubeconfig, kc.exportConfig());
    const args = container.args!.map((a) => a.replace('$(POD_NAME)', 'tally-operator-0'));
    // Only the listener moves to a free loopback port; the chart's --admin-* flags come first, so these win.
    operator = startProcess(
      'operator',
      process.execPath,
      [
        path.join(projectRoot(), 'dist', 'cli', 'tally.js'),
        ...args,
        `--kubeconfig=${kubeconfig}`,
        '--admin-host=127.0.0.1',
        '--admin-port=0',
      ],
      path.join(dir, 'operator.log'),
    );
  }, 30 * 60_000); // a machine's first run builds helm
  afterAll(async () => {
    await operator?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('renders ingest and forwarder with the values: image, replicas, resources, security, pull secrets, database', async () => {
    const read = (name: string) =>
      eventually(`Deployment ${name} (operator log: ${dir}/operator.log)`, () =>
        apps.readNamespacedDeployment({ name, namespace: ns }),
      );
    const ingest = await read('tally-ingest');
    const forwarder = await read('tally-forwarder');
    expect(ingest.spec?.replicas).toBe(3);
    expect(forwarder.spec?.replicas).toBe(1);
    expect(ingest.spec!.template.spec!.containers[0]!.resources).toEqual(values.ingest.resources);
    expect(forwarder.spec!.template.spec!.containers[0]!.resources).toEqual(values.forwarder.resources);
    for (const d of [ingest, forwarder]) {
      const pod = d.spec!.template.spec!;
      const c = pod.containers[0]!;
      expect(c.image).toBe('ghcr.io/tally-dev/tally:0.1.0');
      expect(c.imagePullPolicy).toBe('IfNotPresent');
      expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      // runAsGroup comes from the chart's defaults (Helm merges maps).
      expect(pod.securityContext).toEqual({ ...values.podSecurityContext, runAsGroup: 65532 });
      expect(c.securityContext).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.env).toEqual([
        { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'tally-database', key: 'url' } } },
      ]);
    }
    // The Secret it names exists (the bundled PostgreSQL's), with the password of tally-postgresql.
    const decode = (s: V1Secret, key: string) => Buffer.from(s.data![key]!, 'base64').toString();
    const url = decode(await core.readNamespacedSecret({ name: 'tally-database', namespace: ns }), 'url');
    const password = decode(
      await core.readNamespacedSecret({ name: 'tally-postgresql', namespace: ns }),
      'password',
    );
    expect(url).toBe(`postgres://tally:${password}@tally-postgresql.${ns}.svc:5432/tally?sslmode=disable`);
  });

  it("gives the ServiceMonitor's selector three Services with an admin port: operator, ingest, forwarder", async () => {
    await eventually('the forwarder Service', () =>
      core.readNamespacedService({ name: 'tally-forwarder', namespace: ns }),
    );
    // The selector of templates/servicemonitor.yaml, evaluated by the API server.
    const list = await core.listNamespacedService({
      namespace: ns,
      labelSelector:
        'app.kubernetes.io/name=tally,app.kubernetes.io/component in (operator,ingest,forwarder)',
    });
    expect(list.items.map((s) => s.metadata!.name).sort()).toEqual([
      'tally-forwarder',
      'tally-ingest',
      'tally-operator',
    ]);
    for (const s of list.items) expect(s.spec!.ports!.map((p) => p.name)).toContain('admin');
  });

  it('reconciles the watched namespace under the chart RBAC, with webhook URLs on the public base URL', async () => {
    const r = resources(watched);
    await r.apply('calintegrations', 'calls', { displayName: 'Calls' });
    const cal = await eventually('the webhook secret and URL', async () => {
      const c = await r.get<CalIntegration>('calintegrations', 'calls');
      return condition(c, 'SecretProvisioned')?.status === 'True' && Boolean(c?.status?.webhookURL) && c;
    });
    expect(cal.status?.webhookURL).toBe(`https://hooks.example.test/webhooks/cal/${watched}/calls`);
    expect(await r.secret('calls-cal-webhook')).toBeDefined();
    // No ingest pod runs here, and the status says so rather than claiming Ready.
    expect(condition(cal, 'Ready')?.status).not.toBe('True');
  });
});
