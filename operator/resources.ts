import type { KubernetesObject, V1Secret } from '@kubernetes/client-node';
import type {
  CalIntegrationSpec,
  CalIntegrationStatus,
  MetaPixelSpec,
  MetaPixelStatus,
  StripeIntegrationSpec,
  StripeIntegrationStatus,
} from '../core/api/v1alpha1/index.js';
import { API_VERSION, GROUP, VERSION } from '../core/api/v1alpha1/index.js';

export { API_VERSION, GROUP, VERSION };

/** The one field manager every write of the operator uses. */
export const FIELD_MANAGER = 'tally-operator';
export const FINALIZER = 'tally.dev/cleanup';
export const ROTATE_ANNOTATION = 'tally.dev/rotate-webhook-secret';
export const CONFIG_HASH_ANNOTATION = 'tally.dev/config-hash';
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'tally-operator';

type Resource<Spec, Status> = KubernetesObject & {
  apiVersion: string;
  kind: string;
  metadata: NonNullable<KubernetesObject['metadata']> & { name: string; namespace: string };
  spec: Spec;
  status?: Status;
};

export type StripeIntegration = Resource<StripeIntegrationSpec, StripeIntegrationStatus>;
export type CalIntegration = Resource<CalIntegrationSpec, CalIntegrationStatus>;
export type MetaPixel = Resource<MetaPixelSpec, MetaPixelStatus>;
export type TallyResource = StripeIntegration | CalIntegration | MetaPixel;

export interface KindInfo {
  kind: 'StripeIntegration' | 'CalIntegration' | 'MetaPixel';
  plural: 'stripeintegrations' | 'calintegrations' | 'metapixels';
}
export const STRIPE: KindInfo = { kind: 'StripeIntegration', plural: 'stripeintegrations' };
export const CAL: KindInfo = { kind: 'CalIntegration', plural: 'calintegrations' };
export const PIXEL: KindInfo = { kind: 'MetaPixel', plural: 'metapixels' };

/** Deterministic names of the Secrets the operator provisions next to a resource. */
export const stripeSigningSecretName = (name: string) => `${name}-stripe-webhook`;
export const calWebhookSecretName = (name: string) => `${name}-cal-webhook`;
export const STRIPE_SIGNING_KEY = 'signingSecret';
export const CAL_SECRET_KEY = 'webhookSecret';
export const CAL_PREVIOUS_SECRET_KEY = 'previousWebhookSecret';

export function webhookURL(
  publicBaseURL: string,
  source: 'stripe' | 'cal',
  ns: string,
  name: string,
): string {
  return `${publicBaseURL.replace(/\/+$/, '')}/webhooks/${source}/${ns}/${name}`;
}

/** The ownerReference that makes `owner` the controller of a child in its namespace. */
export function ownerReference(owner: TallyResource) {
  return {
    apiVersion: API_VERSION,
    kind: owner.kind,
    name: owner.metadata.name,
    uid: owner.metadata.uid!,
    controller: true,
    blockOwnerDeletion: true,
  };
}

export function isControlledBy(child: KubernetesObject, owner: TallyResource): boolean {
  return Boolean(
    child.metadata?.ownerReferences?.some((r) => r.controller === true && r.uid === owner.metadata.uid),
  );
}

/** A Secret's value by key, decoded; undefined when the Secret or key is absent. */
export function secretValue(secret: V1Secret | undefined, key: string): string | undefined {
  const b64 = secret?.data?.[key];
  return b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');
}

/** JSON with sorted keys: equal values give equal text whatever order the server sent fields in. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b)),
        )
      : v,
  );
}
