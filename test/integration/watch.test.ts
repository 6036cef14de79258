import { CustomObjectsApi, PatchStrategy, setHeaderOptions, Watch } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestNamespace, kubeConfig } from '../env/context.js';

const group = 'tally.dev';
const version = 'v1alpha1';
const plural = 'metapixels';

describe('watching custom resources through @kubernetes/client-node', () => {
  let ns: string;
  let abort: AbortController | undefined;
  const seen: { type: string; name: string; displayName: string; resourceVersion: string }[] = [];

  beforeAll(async () => {
    ns = await createTestNamespace('watch');
  });
  afterAll(() => abort?.abort());

  it('sees create, update and delete of a MetaPixel in order', async () => {
    const kc = kubeConfig();
    const co = kc.makeApiClient(CustomObjectsApi);
    const connected = new Promise<void>((resolve, reject) => {
      new Watch(kc)
        .watch(
          `/apis/${group}/${version}/namespaces/${ns}/${plural}`,
          { allowWatchBookmarks: false },
          (
            type,
            obj: { metadata: { name: string; resourceVersion: string }; spec: { displayName: string } },
          ) => {
            seen.push({
              type,
              name: obj.metadata.name,
              displayName: obj.spec.displayName,
              resourceVersion: obj.metadata.resourceVersion,
            });
          },
          (err) => {
            if (err && (err as Error).name !== 'AbortError') reject(err as Error);
          },
        )
        .then((controller) => {
          abort = controller;
          resolve();
        }, reject);
    });
    await connected;

    const body = {
      apiVersion: `${group}/${version}`,
      kind: 'MetaPixel',
      metadata: { name: 'watched', namespace: ns },
      spec: {
        displayName: 'Website Pixel',
        pixelId: '1234567890123456',
        accessTokenSecretRef: { name: 'meta', key: 'token' },
      },
    };
    await co.createNamespacedCustomObject({ group, version, namespace: ns, plural, body });
    await co.patchNamespacedCustomObject(
      {
        group,
        version,
        namespace: ns,
        plural,
        name: 'watched',
        body: { spec: { displayName: 'Renamed Pixel' } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    await co.deleteNamespacedCustomObject({ group, version, namespace: ns, plural, name: 'watched' });

    await expect
      .poll(() => seen.map((e) => e.type), { timeout: 10_000 })
      .toEqual(['ADDED', 'MODIFIED', 'DELETED']);
    expect(seen.map((e) => e.displayName)).toEqual(['Website Pixel', 'Renamed Pixel', 'Renamed Pixel']);
    expect(new Set(seen.map((e) => e.resourceVersion)).size).toBe(3);
    await expect(
      co.getNamespacedCustomObject({ group, version, namespace: ns, plural, name: 'watched' }),
    ).rejects.toMatchObject({ code: 404 });
  });
});
