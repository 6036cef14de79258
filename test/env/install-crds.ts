import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type KubeConfig,
} from '@kubernetes/client-node';
import { allCustomResourceDefinitions } from '../../core/api/v1alpha1/index.js';
import { waitFor } from './processes.js';

export const FIELD_MANAGER = 'tally-dev';

/** Applies Tally's CRDs with server-side apply and waits until the API server serves them. */
export async function installCustomResourceDefinitions(kc: KubeConfig): Promise<string[]> {
  // CustomObjectsApi sends the object as it is. KubernetesObjectApi would pass it through the typed
  // V1CustomResourceDefinition model, which silently drops `enum`, `default` and x-kubernetes-* keys.
  const raw = kc.makeApiClient(CustomObjectsApi);
  const crds = allCustomResourceDefinitions();
  for (const crd of crds) {
    await raw.patchClusterCustomObject(
      {
        group: 'apiextensions.k8s.io',
        version: 'v1',
        plural: 'customresourcedefinitions',
        name: crd.metadata.name,
        body: crd,
        fieldManager: FIELD_MANAGER,
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const names = crds.map((crd) => crd.metadata.name);
  for (const name of names) {
    await waitFor(
      `CRD ${name} to be Established`,
      async () => {
        const crd = await ext.readCustomResourceDefinition({ name });
        return Boolean(crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'));
      },
      { timeoutMs: 30_000 },
    );
  }
  // Established is not yet servable: until its watch cache has synced, the API server answers watches
  // with 429. Wait for that too, so the first informer of a test or of `tally dev` connects.
  for (const crd of crds) {
    const path = `/apis/${crd.spec.group}/${crd.spec.versions[0]!.name}/${crd.spec.names.plural}`;
    await waitFor(`a watch on ${path} to be accepted`, () => watchAccepted(kc, path), { timeoutMs: 30_000 });
  }
  return names;
}

async function watchAccepted(kc: KubeConfig, path: string): Promise<boolean> {
  const controller = await new Watch(kc).watch(
    path,
    { timeoutSeconds: 1 },
    () => {},
    () => {},
  );
  controller.abort();
  return true;
}
