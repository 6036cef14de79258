import yaml from 'js-yaml';
import type { V1Secret } from '@kubernetes/client-node';
import {
  CalIntegrationConfig,
  MetaPixelConfig,
  StripeIntegrationConfig,
  TallyConfig,
} from '../../core/config/tally-config.js';
import {
  CAL_PREVIOUS_SECRET_KEY,
  CAL_SECRET_KEY,
  calWebhookSecretName,
  isControlledBy,
  secretValue,
  STRIPE_SIGNING_KEY,
  stripeSigningSecretName,
  type CalIntegration,
  type MetaPixel,
  type StripeIntegration,
} from '../resources.js';
import { digestOf } from '../kube.js';

/** Entry ids in the rendered configuration: `stripe:ns/name`, `cal:ns/name`, `pixel:ns/name`. */
export type EntryId = `${'stripe' | 'cal' | 'pixel'}:${string}`;

export interface RenderInput {
  stripe: readonly StripeIntegration[];
  cal: readonly CalIntegration[];
  pixels: readonly MetaPixel[];
  secret(namespace: string, name: string): V1Secret | undefined;
}

export interface Rendered {
  /** The configuration object (validated with TallyConfig), without listener overrides. */
  config: Record<string, unknown>;
  /** Digest of each included entry: a changed secret changes its entry's digest. */
  entries: Map<EntryId, string>;
  /** Why a resource is not in the configuration (a missing secret…), for its conditions. */
  excluded: Map<EntryId, string>;
}

const byId = <T extends { metadata: { namespace: string; name: string } }>(a: T, b: T) =>
  `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`);

const live = <T extends { metadata: { deletionTimestamp?: unknown } }>(items: readonly T[]) =>
  items.filter((i) => !i.metadata.deletionTimestamp);

/**
 * The ingest/forwarder configuration from every resource and the Secrets they use. A resource whose
 * secret is missing or invalid is left out (and says why); the others are unaffected.
 */
export function renderConfig(input: RenderInput): Rendered {
  const entries = new Map<EntryId, string>();
  const excluded = new Map<EntryId, string>();
  const stripe: StripeIntegrationConfig[] = [];
  const cal: CalIntegrationConfig[] = [];
  const metaPixels: MetaPixelConfig[] = [];

  for (const s of [...live(input.stripe)].sort(byId)) {
    const { namespace, name } = s.metadata;
    const id: EntryId = `stripe:${namespace}/${name}`;
    const managed = (s.spec.webhook?.mode ?? 'Managed') === 'Managed';
    let signing: string | undefined;
    if (managed) {
      const owned = input.secret(namespace, stripeSigningSecretName(name));
      signing = owned && isControlledBy(owned, s) ? secretValue(owned, STRIPE_SIGNING_KEY) : undefined;
      if (!signing) {
        excluded.set(id, 'the webhook endpoint has not been registered yet');
        continue;
      }
    } else {
      const ref = s.spec.webhook?.signingSecretRef;
      signing = ref ? secretValue(input.secret(namespace, ref.name), ref.key) : undefined;
      if (!signing) {
        excluded.set(id, `Secret ${namespace}/${ref?.name} key ${ref?.key} is missing`);
        continue;
      }
    }
    // The restricted key also lets the forwarder read customers' attribution metadata; without one it
    // sends what the events carry.
    const keyRef = s.spec.apiKeySecretRef;
    const apiKey = keyRef ? secretValue(input.secret(namespace, keyRef.name), keyRef.key) : undefined;
    const entry = StripeIntegrationConfig.safeParse({
      namespace,
      name,
      signingSecrets: [signing],
      ...(apiKey && STRIPE_API_KEY.test(apiKey) ? { apiKey } : {}),
      conversionTypes: s.spec.conversionTypes,
      ...(s.spec.connectAccountId ? { connectAccountId: s.spec.connectAccountId } : {}),
    });
    if (!entry.success) {
      excluded.set(id, entry.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      continue;
    }
    stripe.push(entry.data);
    entries.set(id, digestOf(entry.data));
  }

  for (const c of [...live(input.cal)].sort(byId)) {
    const { namespace, name } = c.metadata;
    const id: EntryId = `cal:${namespace}/${name}`;
    const owned = input.secret(namespace, calWebhookSecretName(name));
    const current = owned && isControlledBy(owned, c) ? secretValue(owned, CAL_SECRET_KEY) : undefined;
    if (!current) {
      excluded.set(id, 'the webhook secret has not been generated yet');
      continue;
    }
    const previous = secretValue(owned, CAL_PREVIOUS_SECRET_KEY);
    const entry = CalIntegrationConfig.safeParse({
      namespace,
      name,
      webhookSecrets: previous ? [current, previous] : [current],
      bookingEvents: c.spec.bookingEvents,
    });
    if (!entry.success) {
      excluded.set(id, entry.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      continue;
    }
    cal.push(entry.data);
    entries.set(id, digestOf(entry.data));
  }

  for (const p of [...live(input.pixels)].sort(byId)) {
    const { namespace, name } = p.metadata;
    const id: EntryId = `pixel:${namespace}/${name}`;
    const ref = p.spec.accessTokenSecretRef;
    const token = secretValue(input.secret(namespace, ref.name), ref.key);
    if (!token) {
      excluded.set(id, `Secret ${namespace}/${ref.name} key ${ref.key} is missing`);
      continue;
    }
    const entry = MetaPixelConfig.safeParse({
      namespace,
      name,
      pixelId: p.spec.pixelId,
      accessToken: token,
      ...(p.spec.stripeIntegrations ? { stripeIntegrations: [...p.spec.stripeIntegrations].sort() } : {}),
      ...(p.spec.testEventCode ? { testEventCode: p.spec.testEventCode } : {}),
    });
    if (!entry.success) {
      excluded.set(id, entry.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      continue;
    }
    metaPixels.push(entry.data);
    entries.set(id, digestOf(entry.data));
  }

  return { config: { stripe, cal, metaPixels }, entries, excluded };
}

/**
 * The file text: the Kubernetes listeners by default, or `ingest` overrides for the local pipeline.
 * Validated with ingest's own schema first: a file ingest would reject is never written.
 */
export function configText(config: Record<string, unknown>, ingest?: Record<string, unknown>): string {
  const doc = ingest ? { ingest, ...config } : config;
  TallyConfig.parse(doc);
  return yaml.dump(doc, { noRefs: true, lineWidth: -1 });
}

/** The local file: the same entries as `text`, with the local listeners (`ingest`, `forwarder` sections) in front. */
export function withListeners(text: string, listeners: Record<string, unknown>): string {
  return yaml.dump(listeners, { lineWidth: -1 }) + text;
}

const STRIPE_API_KEY = /^(rk|sk)_(test|live)_\S+$/;
