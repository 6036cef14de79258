import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeConfig } from '../env/context.js';
import { freePort } from '../env/processes.js';
import { eventually, operatorNamespaces, startOperator, type TestOperator } from './support.js';

/**
 * What the Helm chart passes to the operator for the Deployments it renders: per-component resources,
 * security contexts, pull policy and pull secrets. The API server validates what the operator applies.
 */
describe('the ingest and forwarder workloads in kubernetes mode', () => {
  let opsNs: string;
  let op: TestOperator;
  const apps = kubeConfig().makeApiClient(AppsV1Api);
  const core = kubeConfig().makeApiClient(CoreV1Api);
  const read = (name: string) =>
    eventually(`Deployment ${name}`, () => apps.readNamespacedDeployment({ name, namespace: opsNs }));

  beforeAll(async () => {
    const names = await operatorNamespaces('workloads');
    opsNs = names.opsNs;
    op = await startOperator(opsNs, names.ns, {
      pipeline: 'kubernetes',
      ingestAdminURL: `http://127.0.0.1:${await freePort()}`,
      image: 'registry.example/tally:1.2.3',
      imagePullPolicy: 'Always',
      imagePullSecrets: ['regcred'],
      ingestReplicas: 3,
      forwarderReplicas: 2,
      ingestResources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } },
      forwarderResources: { requests: { cpu: '50m' }, limits: { memory: '128Mi' } },
      podSecurityContext: {
        runAsNonRoot: true,
        runAsUser: 10001,
        runAsGroup: 10001,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containerSecurityContext: {
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        runAsNonRoot: true,
      },
    });
  });
  afterAll(async () => {
    await op?.close();
  });

  it('applies resources per component, the security contexts, pull policy and pull secrets', async () => {
    const ingest = await read('tally-ingest');
    const forwarder = await read('tally-forwarder');
    expect(ingest.spec?.replicas).toBe(3);
    expect(forwarder.spec?.replicas).toBe(2);
    expect(ingest.spec!.template.spec!.containers[0]!.resources).toEqual({
      requests: { cpu: '250m', memory: '256Mi' },
      limits: { memory: '512Mi' },
    });
    expect(forwarder.spec!.template.spec!.containers[0]!.resources).toEqual({
      requests: { cpu: '50m' },
      limits: { memory: '128Mi' },
    });
    for (const d of [ingest, forwarder]) {
      const pod = d.spec!.template.spec!;
      expect(pod.securityContext).toEqual({
        runAsNonRoot: true,
        runAsUser: 10001,
        runAsGroup: 10001,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.containers[0]!.securityContext).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
        runAsNonRoot: true,
      });
      expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
      expect(pod.containers[0]!.imagePullPolicy).toBe('Always');
      expect(pod.containers[0]!.image).toBe('registry.example/tally:1.2.3');
    }
  });

  it("gives the forwarder's admin API a Service that selects the forwarder pods on their admin port", async () => {
    const forwarder = await read('tally-forwarder');
    const service = await eventually('Service tally-forwarder', () =>
      core.readNamespacedService({ name: 'tally-forwarder', namespace: opsNs }),
    );
    const admin = forwarder.spec!.template.spec!.containers[0]!.ports!.find((p) => p.name === 'admin')!;
    expect(admin.containerPort).toBe(9091); // the forwarder's own default: the rendered file sets none
    expect(service.spec?.ports?.map((p) => [p.name, p.port, p.targetPort])).toEqual([
      ['admin', 9091, 'admin'],
    ]);
    expect(forwarder.spec!.template.metadata!.labels).toMatchObject(service.spec!.selector!);
    expect(service.metadata?.labels).toMatchObject({
      'app.kubernetes.io/name': 'tally',
      'app.kubernetes.io/component': 'forwarder',
      'app.kubernetes.io/managed-by': 'tally-operator',
    });
    expect(service.metadata?.managedFields?.map((f) => f.manager)).toEqual(['tally-operator']);
  });
});
