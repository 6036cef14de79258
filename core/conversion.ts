import type { Money } from './money.js';

export type Source = 'stripe' | 'cal';

/** A money movement an event reports, so that one payment counts once however many events report it. */
export interface MoneyMovement {
  /** invoice:in_…, payment_intent:pi_…, checkout:cs_…, charge:ch_… */
  key: string;
  amount: Money;
  /** Other keys the payload proves are the same money (an invoice's PaymentIntents). */
  aliases: string[];
}

/** What an ingest adapter makes of one verified provider event, ready to be stored. */
export interface NormalizedEvent {
  source: Source;
  /** namespace/name of the integration resource. */
  integration: string;
  /** Stripe: `${account ?? 'self'}:${evt id}`; Cal.com: `${trigger}:${uid}[:${seat}]`. */
  idempotencyKey: string;
  providerEventId?: string;
  providerType: string;
  /** checkout_completed, booking_created, …; undefined for events stored only for the forwarder. */
  conversionType?: string;
  occurredAt: Date;
  amount?: Money;
  money?: MoneyMovement;
  customerId?: string;
  customerEmail?: string;
  account?: string;
  livemode?: boolean;
  attribution: Record<string, string>;
  details: Record<string, unknown>;
  /** The provider's event as received, JSON text, stored byte for byte. */
  payload: string;
  /** Outbox destinations that want this event, e.g. meta:growth/website-pixel. */
  destinations: string[];
}

/** Metadata keys kept for attribution (customer metadata, object metadata, booking metadata). */
export function pickAttribution(
  ...sources: (Record<string, unknown> | null | undefined)[]
): Record<string, string> {
  const out: Record<string, string> = {};
  // Earlier sources win: the caller passes the most specific first.
  for (const source of sources) {
    for (const [key, value] of Object.entries(source ?? {})) {
      if (!isAttributionKey(key) || key in out) continue;
      if (typeof value === 'string' && value.trim() !== '') out[key] = value.trim();
    }
  }
  return out;
}

const ATTRIBUTION_KEYS = new Set([
  'fbc',
  'fbp',
  'client_ip',
  'client_user_agent',
  'anonymous_id',
  'event_source_url',
]);

function isAttributionKey(key: string): boolean {
  return ATTRIBUTION_KEYS.has(key) || /^utm_[a-z_]+$/.test(key);
}
