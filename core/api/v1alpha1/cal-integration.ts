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

export const CAL_BOOKING_EVENTS = ['booking_created', 'booking_cancelled'] as const;
export const CalBookingEvent = z.enum(CAL_BOOKING_EVENTS);
export type CalBookingEvent = z.infer<typeof CalBookingEvent>;

export const CalIntegrationSpec = z
  .object({
    displayName: DisplayName,
    bookingEvents: z
      .array(CalBookingEvent)
      .min(1)
      .max(CAL_BOOKING_EVENTS.length)
      .default([...CAL_BOOKING_EVENTS])
      .meta({
        description:
          'Which booking events become conversions. Default: booking_created and booking_cancelled.',
        'x-kubernetes-list-type': 'set',
      }),
  })
  .describe('A Cal.com account whose bookings become conversions. Tally generates the webhook secret.');
export type CalIntegrationSpec = z.infer<typeof CalIntegrationSpec>;

export const CalIntegrationStatus = z
  .object({
    observedGeneration: ObservedGeneration.optional(),
    phase: Phase.optional().describe(
      'One-line state for people: "Waiting for first booking" or "Receiving booking events". Informational; use conditions.',
    ),
    message: Message.optional(),
    webhookURL: z
      .string()
      .max(2048)
      .optional()
      .describe('Paste this as the Subscriber URL of a Cal.com webhook (Settings → Developer → Webhooks).'),
    webhookSecretRef: SecretKeySelector.optional().describe(
      'The Secret Tally generated with the webhook secret to paste into Cal.com. Rotate it with the annotation ' +
        'tally.dev/rotate-webhook-secret.',
    ),
    lastEventTime: Timestamp.optional().describe('When the last Cal.com booking event was received.'),
    bookingCounts: z
      .record(z.string(), z.int().min(0))
      .optional()
      .describe('Booking events received per type, e.g. {"booking_created": 4, "booking_cancelled": 1}.'),
    conditions: Conditions.optional(),
  })
  .describe('Observed state of the integration, written by the Tally operator.');
export type CalIntegrationStatus = z.infer<typeof CalIntegrationStatus>;
