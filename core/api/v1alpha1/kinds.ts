import type { z } from 'zod';
import { CalIntegrationSpec, CalIntegrationStatus } from './cal-integration.js';
import { MetaPixelSpec, MetaPixelStatus } from './meta-pixel.js';
import { StripeIntegrationSpec, StripeIntegrationStatus } from './stripe-integration.js';

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  printerColumns: PrinterColumn[];
}

const readyColumn: PrinterColumn = {
  name: 'Ready',
  type: 'string',
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: 'Whether the resource is fully working (the Ready condition).',
};
const phaseColumn: PrinterColumn = {
  name: 'Phase',
  type: 'string',
  jsonPath: '.status.phase',
  description: 'One-line state for people.',
};
const lastEventColumn: PrinterColumn = {
  name: 'Last Event',
  type: 'date',
  jsonPath: '.status.lastEventTime',
  description: 'When the last event was received.',
};
const ageColumn: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'Time since the resource was created.',
};
const messageColumn: PrinterColumn = {
  name: 'Message',
  type: 'string',
  jsonPath: '.status.message',
  description: 'Details about the phase.',
  priority: 1,
};

export const KINDS: readonly KindDefinition[] = [
  {
    kind: 'StripeIntegration',
    plural: 'stripeintegrations',
    singular: 'stripeintegration',
    shortNames: ['stripe'],
    description:
      "A StripeIntegration turns one Stripe account's webhooks into conversions with revenue: checkout_completed, " +
      'payment_completed, subscription_created, subscription_updated, invoice_paid and charge_succeeded.',
    spec: StripeIntegrationSpec,
    status: StripeIntegrationStatus,
    printerColumns: [
      readyColumn,
      phaseColumn,
      {
        name: 'Revenue',
        type: 'string',
        jsonPath: '.status.recentRevenue.summary',
        description: 'Recent revenue per currency.',
      },
      lastEventColumn,
      ageColumn,
      {
        name: 'Mode',
        type: 'string',
        jsonPath: '.spec.webhook.mode',
        description: 'Webhook mode.',
        priority: 1,
      },
      {
        name: 'Webhook URL',
        type: 'string',
        jsonPath: '.status.webhookURL',
        description: 'Webhook URL.',
        priority: 1,
      },
      messageColumn,
    ],
  },
  {
    kind: 'MetaPixel',
    plural: 'metapixels',
    singular: 'metapixel',
    shortNames: ['pixel'],
    description:
      "A MetaPixel forwards Stripe-derived conversions to Meta's Conversions API (Purchase, Subscribe, PaymentFailed, " +
      'SubscriptionCancelled) with hashed customer data, for ad attribution.',
    spec: MetaPixelSpec,
    status: MetaPixelStatus,
    printerColumns: [
      { name: 'Pixel', type: 'string', jsonPath: '.spec.pixelId', description: 'The Meta pixel ID.' },
      readyColumn,
      phaseColumn,
      {
        name: 'Forwarded',
        type: 'integer',
        jsonPath: '.status.eventsForwarded',
        description: 'Events Meta accepted.',
      },
      {
        name: 'Failed',
        type: 'integer',
        jsonPath: '.status.eventsFailed',
        description: 'Events that failed.',
      },
      ageColumn,
      {
        name: 'Last Forward',
        type: 'date',
        jsonPath: '.status.lastForwardTime',
        description: 'When Meta last accepted a batch.',
        priority: 1,
      },
      messageColumn,
    ],
  },
  {
    kind: 'CalIntegration',
    plural: 'calintegrations',
    singular: 'calintegration',
    shortNames: ['cal'],
    description:
      'A CalIntegration turns Cal.com bookings into conversions (booking_created, booking_cancelled). Tally generates ' +
      'the webhook secret and shows the subscriber URL to paste into Cal.com.',
    spec: CalIntegrationSpec,
    status: CalIntegrationStatus,
    printerColumns: [
      readyColumn,
      phaseColumn,
      {
        name: 'Bookings',
        type: 'integer',
        jsonPath: '.status.bookingCounts.booking_created',
        description: 'Bookings created.',
      },
      lastEventColumn,
      ageColumn,
      {
        name: 'Webhook URL',
        type: 'string',
        jsonPath: '.status.webhookURL',
        description: 'Webhook URL.',
        priority: 1,
      },
      messageColumn,
    ],
  },
];
