import { z } from 'zod';
import {
  Conditions,
  DisplayName,
  Message,
  ObservedGeneration,
  Phase,
  SecretKeySelector,
  Timestamp,
} from './common.js';
import { RecentRevenue } from './money.js';

/** The conversions Tally derives from Stripe events. */
export const STRIPE_CONVERSION_TYPES = [
  'checkout_completed',
  'payment_completed',
  'subscription_created',
  'subscription_updated',
  'invoice_paid',
  'charge_succeeded',
] as const;
export const StripeConversionType = z.enum(STRIPE_CONVERSION_TYPES);
export type StripeConversionType = z.infer<typeof StripeConversionType>;

export const WEBHOOK_MODES = ['Managed', 'External'] as const;

export const StripeWebhook = z
  .object({
    mode: z
      .enum(WEBHOOK_MODES)
      .default('Managed')
      .describe(
        'Managed: Tally registers the webhook endpoint through the Stripe API with apiKeySecretRef and stores the signing ' +
          'secret Stripe returns. External: you created the endpoint in the Stripe dashboard and reference its signing ' +
          'secret in signingSecretRef.',
      ),
    signingSecretRef: SecretKeySelector.optional().describe(
      'The endpoint\'s signing secret ("whsec_..."). Required when mode is External; Tally fills status.signingSecretRef ' +
        'itself when mode is Managed.',
    ),
  })
  .meta({
    description: "How Stripe's webhook endpoint for this integration is created and verified.",
    'x-kubernetes-validations': [
      {
        rule: "self.mode != 'External' || has(self.signingSecretRef)",
        message:
          'signingSecretRef is required when mode is External: reference the Secret holding the whsec_ signing secret',
      },
      {
        rule: "self.mode != 'Managed' || !has(self.signingSecretRef)",
        message:
          'signingSecretRef must not be set when mode is Managed: Tally stores the signing secret Stripe returns',
      },
    ],
  });

export const StripeIntegrationSpec = z
  .object({
    displayName: DisplayName,
    apiKeySecretRef: SecretKeySelector.optional().describe(
      'A Stripe restricted API key ("rk_live_..." or "rk_test_..."). Required when webhook.mode is Managed (write access ' +
        'to Webhook Endpoints); also used to read customers for attribution (read access to Customers).',
    ),
    webhook: StripeWebhook.default({ mode: 'Managed' }),
    conversionTypes: z
      .array(StripeConversionType)
      .min(1)
      .max(STRIPE_CONVERSION_TYPES.length)
      .default([...STRIPE_CONVERSION_TYPES])
      .meta({
        description:
          'Which conversions to track. Default: all six (checkout_completed, payment_completed, subscription_created, ' +
          'subscription_updated, invoice_paid, charge_succeeded).',
        'x-kubernetes-list-type': 'set',
      }),
    connectAccountId: z
      .string()
      .regex(/^acct_[A-Za-z0-9]+$/)
      .max(64)
      .optional()
      .describe('A Stripe Connect account ("acct_..."): track only events of this connected account.'),
  })
  .meta({
    description: 'What to track from one Stripe account and how its webhooks reach Tally.',
    'x-kubernetes-validations': [
      {
        rule: "self.webhook.mode != 'Managed' || has(self.apiKeySecretRef)",
        message:
          'apiKeySecretRef is required when webhook.mode is Managed: Tally registers the endpoint with this key',
      },
    ],
  });
export type StripeIntegrationSpec = z.infer<typeof StripeIntegrationSpec>;

export const StripeIntegrationStatus = z
  .object({
    observedGeneration: ObservedGeneration.optional(),
    phase: Phase.optional().describe(
      'One-line state for people, e.g. "Waiting for first event" or "Receiving payment events". Informational; use conditions.',
    ),
    message: Message.optional(),
    webhookURL: z
      .string()
      .max(2048)
      .optional()
      .describe('The URL Stripe delivers events to. In External mode, paste it into the Stripe dashboard.'),
    endpointId: z
      .string()
      .max(255)
      .optional()
      .describe('The Stripe webhook endpoint ("we_...") Tally registered in Managed mode.'),
    signingSecretRef: SecretKeySelector.optional().describe(
      'Where the signing secret in use lives: the Secret Tally owns in Managed mode, spec.webhook.signingSecretRef otherwise.',
    ),
    lastEventTime: Timestamp.optional().describe(
      'When the last Stripe event for this integration was received.',
    ),
    recentRevenue: RecentRevenue.optional(),
    eventCounts: z
      .record(z.string(), z.int().min(0))
      .optional()
      .describe('Conversions received per type, e.g. {"checkout_completed": 12}.'),
    conditions: Conditions.optional(),
  })
  .describe('Observed state of the integration, written by the Tally operator.');
export type StripeIntegrationStatus = z.infer<typeof StripeIntegrationStatus>;
