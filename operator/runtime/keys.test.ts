import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { controllerOwnerKey, objectKey, splitKey } from './keys.js';

const secret = (
  ownerReferences: NonNullable<KubernetesObject['metadata']>['ownerReferences'],
): KubernetesObject => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'acme-webhook', namespace: 'growth', ownerReferences },
});
const ref = (apiVersion: string, kind: string, name: string, controller?: boolean) => ({
  apiVersion,
  kind,
  name,
  uid: `uid-${name}`,
  ...(controller === undefined ? {} : { controller }),
});

describe('queue keys', () => {
  it('are namespace/name, or name for cluster-scoped objects, and split back', () => {
    expect(objectKey({ metadata: { name: 'acme', namespace: 'growth' } })).toBe('growth/acme');
    expect(objectKey({ metadata: { name: 'stripeintegrations.tally.dev' } })).toBe(
      'stripeintegrations.tally.dev',
    );
    expect(() => objectKey({ metadata: {} })).toThrow(/no metadata.name/);
    expect(splitKey('growth/acme')).toEqual({ namespace: 'growth', name: 'acme' });
    expect(splitKey('cluster-thing')).toEqual({ namespace: undefined, name: 'cluster-thing' });
  });

  it("map an owned child to its controlling owner's key, by group and kind", () => {
    const owner = { group: 'tally.dev', kind: 'StripeIntegration' };
    expect(
      controllerOwnerKey(secret([ref('tally.dev/v1alpha1', 'StripeIntegration', 'acme', true)]), owner),
    ).toBe('growth/acme');
    // Any version of the group matches, as in controller-runtime.
    expect(controllerOwnerKey(secret([ref('tally.dev/v1', 'StripeIntegration', 'acme', true)]), owner)).toBe(
      'growth/acme',
    );
    // Only the controller reference counts.
    expect(
      controllerOwnerKey(secret([ref('tally.dev/v1alpha1', 'StripeIntegration', 'acme')]), owner),
    ).toBeUndefined();
    expect(
      controllerOwnerKey(
        secret([
          ref('tally.dev/v1alpha1', 'StripeIntegration', 'other', false),
          ref('tally.dev/v1alpha1', 'StripeIntegration', 'acme', true),
        ]),
        owner,
      ),
    ).toBe('growth/acme');
    expect(
      controllerOwnerKey(secret([ref('tally.dev/v1alpha1', 'CalIntegration', 'acme', true)]), owner),
    ).toBeUndefined();
    expect(
      controllerOwnerKey(secret([ref('example.com/v1', 'StripeIntegration', 'acme', true)]), owner),
    ).toBeUndefined();
    expect(controllerOwnerKey(secret(undefined), owner)).toBeUndefined();
    expect(
      controllerOwnerKey(secret([ref('apps/v1', 'Deployment', 'ingest', true)]), {
        group: 'apps',
        kind: 'Deployment',
      }),
    ).toBe('growth/ingest');
    expect(
      controllerOwnerKey(secret([ref('v1', 'ConfigMap', 'cfg', true)]), { group: '', kind: 'ConfigMap' }),
    ).toBe('growth/cfg');
  });
});
