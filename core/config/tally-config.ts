import yaml from 'js-yaml';
import { z } from 'zod';
import { CAL_BOOKING_EVENTS, CalBookingEvent } from '../api/v1alpha1/cal-integration.js';
import { STRIPE_CONVERSION_TYPES, StripeConversionType } from '../api/v1alpha1/stripe-integration.js';

/**
 * The file ingest and forwarder run from (`--config`). The operator renders it from the custom
 * resources into a Secret; people can write it by hand to run Tally outside a cluster. Secrets are
 * inline because the file itself is the Secret.
 */
const ResourceName = z
  .string()
  .min(1)
  .max(253)
  .regex(
    /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
    'must be a Kubernetes resource name',
  );

const Identity = { namespace: ResourceName, name: ResourceName };

export const StripeIntegrationConfig = z.strictObject({
  ...Identity,
  /** Every secret that may sign a delivery: more than one while a secret is rolled. */
  signingSecrets: z
    .array(z.string().regex(/^whsec_\S+$/, 'must be a Stripe signing secret (whsec_…)'))
    .min(1),
  conversionTypes: z.array(StripeConversionType).default([...STRIPE_CONVERSION_TYPES]),
  connectAccountId: z
    .string()
    .regex(/^acct_\w+$/)
    .optional(),
  /** Restricted key the forwarder uses to read customers (attribution kept in customer metadata). */
  apiKey: z
    .string()
    .regex(/^(rk|sk)_(test|live)_\S+$/, 'must be a Stripe API key (rk_… or sk_…)')
    .optional(),
});
export type StripeIntegrationConfig = z.infer<typeof StripeIntegrationConfig>;

export const CalIntegrationConfig = z.strictObject({
  ...Identity,
  webhookSecrets: z.array(z.string().min(16, 'must be at least 16 characters')).min(1),
  bookingEvents: z.array(CalBookingEvent).default([...CAL_BOOKING_EVENTS]),
});
export type CalIntegrationConfig = z.infer<typeof CalIntegrationConfig>;

export const MetaPixelConfig = z.strictObject({
  ...Identity,
  pixelId: z.string().regex(/^[0-9]{15,17}$/, 'must be 15 to 17 digits'),
  /** StripeIntegration names in the pixel's namespace; omitted means all of them. */
  stripeIntegrations: z.array(ResourceName).optional(),
  accessToken: z.string().min(1).optional(),
  testEventCode: z.string().optional(),
  /** Meta event names to use instead of the defaults (Purchase, Subscribe, StartTrial, PaymentFailed, …). */
  eventNames: z
    .strictObject({
      checkout: z.string().max(50).optional(),
      subscribe: z.string().max(50).optional(),
      trial: z.string().max(50).optional(),
      invoice_paid: z.string().max(50).optional(),
      payment_failed: z.string().max(50).optional(),
      cancelled: z.string().max(50).optional(),
    })
    .optional(),
});
export type MetaPixelConfig = z.infer<typeof MetaPixelConfig>;

export const TallyConfig = z
  .strictObject({
    ingest: z
      .strictObject({
        host: z.string().default('0.0.0.0'),
        /** Public listener: webhooks only. */
        port: z.int().min(0).max(65535).default(8080),
        /** Private listener: read API, /metrics, /healthz, /readyz. */
        adminPort: z.int().min(0).max(65535).default(9090),
        bodyLimitBytes: z
          .int()
          .min(1024)
          .default(1024 * 1024),
        /** How old a Stripe signature's timestamp may be; Stripe's own default. 0 is refused: in stripe ≥ 23 it disables the check. */
        stripeToleranceSeconds: z.int().min(1).default(300),
      })
      .prefault({}),
    forwarder: z
      .strictObject({
        host: z.string().default('0.0.0.0'),
        /** Private listener: /metrics, /healthz, /readyz, the pixel status and dead-letter APIs. */
        adminPort: z.int().min(0).max(65535).default(9091),
        /** Meta's Graph API; tests point it at a local server. */
        graphBaseUrl: z.url().default('https://graph.facebook.com'),
        /** Stripe's API for customer look-ups; tests point it at a local server. */
        stripeApiBaseUrl: z.url().default('https://api.stripe.com'),
        batchSize: z.int().min(1).max(1000).default(1000),
        batchesInFlight: z.int().min(1).max(16).default(2),
        /**
         * Sent and skipped outbox rows are deleted this many days after they were queued. Meta takes no
         * event older than 7 days, so an older row has nothing left to do; pending and dead-lettered rows
         * are kept whatever their age. The events themselves are never deleted.
         */
        outboxRetentionDays: z.int().min(8).default(30),
      })
      .prefault({}),
    database: z
      .strictObject({
        /** Overrides DATABASE_URL; without either an embedded PostgreSQL is started. */
        url: z.string().optional(),
      })
      .prefault({}),
    stripe: z.array(StripeIntegrationConfig).default([]),
    cal: z.array(CalIntegrationConfig).default([]),
    metaPixels: z.array(MetaPixelConfig).default([]),
  })
  .superRefine((config, ctx) => {
    for (const kind of ['stripe', 'cal', 'metaPixels'] as const) {
      const seen = new Set<string>();
      config[kind].forEach((entry, index) => {
        const id = `${entry.namespace}/${entry.name}`;
        if (seen.has(id))
          ctx.addIssue({ code: 'custom', path: [kind, index, 'name'], message: `duplicate ${id}` });
        seen.add(id);
      });
    }
  });
export type TallyConfig = z.infer<typeof TallyConfig>;

export class ConfigError extends Error {}

/** Parses YAML or JSON text; the error names every bad field by its path (`stripe[0].signingSecrets[0]: …`). */
export function parseConfig(text: string, source = 'config'): TallyConfig {
  let raw: unknown;
  try {
    raw = yaml.load(text) ?? {};
  } catch (err) {
    throw new ConfigError(`${source}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  const result = TallyConfig.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
    throw new ConfigError(`${source} is invalid:\n  ${problems.join('\n  ')}`);
  }
  return result.data;
}

function formatPath(path: PropertyKey[]): string {
  return (
    path.reduce<string>(
      (out, part) =>
        typeof part === 'number' ? `${out}[${part}]` : out ? `${out}.${String(part)}` : String(part),
      '',
    ) || '(root)'
  );
}

export const integrationId = (i: { namespace: string; name: string }) => `${i.namespace}/${i.name}`;
