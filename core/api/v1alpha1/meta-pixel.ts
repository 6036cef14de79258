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

export const MetaPixelSpec = z
  .object({
    displayName: DisplayName,
    pixelId: z
      .string()
      .regex(/^[0-9]{15,17}$/)
      .describe('The Meta pixel (dataset) ID: 15 to 17 digits, from Events Manager.'),
    accessTokenSecretRef: SecretKeySelector.describe(
      'A Conversions API access token for the pixel (Events Manager → Settings → Generate access token).',
    ),
    stripeIntegrations: z
      .array(
        z
          .string()
          .min(1)
          .max(253)
          .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/),
      )
      .min(1)
      .max(64)
      .optional()
      .meta({
        description:
          'Names of the StripeIntegrations in this namespace whose events this pixel receives. Omit it to receive ' +
          'events from every StripeIntegration in the namespace.',
        'x-kubernetes-list-type': 'set',
      }),
    testEventCode: z
      .string()
      .regex(/^[A-Za-z0-9]+$/)
      .max(64)
      .optional()
      .describe(
        'Sends events as test events (Events Manager → Test events), e.g. "TEST12345". Remove it for production traffic.',
      ),
  })
  .describe('A Meta pixel that receives Stripe-derived conversions through the Conversions API.');
export type MetaPixelSpec = z.infer<typeof MetaPixelSpec>;

export const MetaPixelStatus = z
  .object({
    observedGeneration: ObservedGeneration.optional(),
    phase: Phase.optional().describe(
      'One-line state for people, e.g. "Forwarding events" or "Access token invalid". Informational; use conditions.',
    ),
    message: Message.optional(),
    eventsForwarded: z.int().min(0).optional().describe('Events Meta accepted for this pixel.'),
    eventsFailed: z
      .int()
      .min(0)
      .optional()
      .describe('Events Meta rejected or that could not be delivered (dead-lettered).'),
    lastForwardTime: Timestamp.optional().describe('When Meta last accepted a batch for this pixel.'),
    lastError: z
      .string()
      .max(1024)
      .optional()
      .describe('The last delivery error as Meta reported it. Never contains the access token.'),
    conditions: Conditions.optional(),
  })
  .describe('Observed state of the pixel, written by the Tally operator.');
export type MetaPixelStatus = z.infer<typeof MetaPixelStatus>;
