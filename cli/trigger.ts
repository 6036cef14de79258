import { booking, calEnvelope, cancellation, ping, reschedule, signCal } from '../core/samples/cal.js';
import {
  charge,
  checkoutSession,
  invoice,
  paymentIntent,
  rid,
  signStripe,
  stripeEvent,
  subscription,
} from '../core/samples/stripe.js';

/** Sample Stripe events by type, shaped like Stripe's (the builders are typed against the stripe package). */
export const STRIPE_SAMPLES: Record<string, () => object> = {
  'checkout.session.completed': () => checkoutSession(),
  'payment_intent.succeeded': () => paymentIntent(),
  'charge.succeeded': () => charge(),
  'customer.subscription.created': () => subscription(),
  'customer.subscription.updated': () => subscription(),
  'customer.subscription.deleted': () =>
    subscription({ status: 'canceled', canceled_at: Math.floor(Date.now() / 1000) }),
  'invoice.paid': () => invoice(),
  'invoice.payment_failed': () =>
    invoice({ status: 'open', amount_paid: 0, amount_remaining: 2000, attempt_count: 1 }),
};

export const CAL_SAMPLES: Record<string, () => object> = {
  BOOKING_CREATED: () => calEnvelope('BOOKING_CREATED', booking()),
  BOOKING_CANCELLED: () => calEnvelope('BOOKING_CANCELLED', cancellation(booking())),
  BOOKING_RESCHEDULED: () => calEnvelope('BOOKING_RESCHEDULED', reschedule(booking())),
  PING: () => ping(),
};

export const DEFAULT_INGEST_URL = 'http://127.0.0.1:8080';

/** Splits "namespace/name", with an error that shows the expected form. */
export function parseIntegration(integration: string): { namespace: string; name: string } {
  const [namespace, name, rest] = integration.split('/');
  if (!namespace || !name || rest !== undefined)
    throw new Error(`--integration must be namespace/name, got "${integration}"`);
  return { namespace, name };
}

export interface TriggerOptions {
  provider: 'stripe' | 'cal';
  type: string;
  integration: string;
  /** The ingest webhook base URL; the route is built from it and the integration. */
  url?: string;
  /** The integration's full webhook URL (its status.webhookURL); wins over `url`. */
  webhookURL?: string;
  secret: string;
  /** Overrides for the sample object, e.g. {"amount_total": 4900, "currency": "eur"}. */
  override?: Record<string, unknown>;
  account?: string;
}

export interface TriggerResult {
  status: number;
  body: string;
  eventId?: string;
}

/** Builds a realistic event, signs it exactly as the provider does, and posts it to ingest. */
export async function trigger(opts: TriggerOptions): Promise<TriggerResult> {
  const { namespace, name } = parseIntegration(opts.integration);
  const route =
    opts.webhookURL ??
    `${(opts.url ?? DEFAULT_INGEST_URL).replace(/\/$/, '')}/webhooks/${opts.provider}/${namespace}/${name}`;
  let body: string;
  let headers: Record<string, string>;
  let eventId: string | undefined;
  if (opts.provider === 'stripe') {
    const sample = STRIPE_SAMPLES[opts.type];
    if (!sample)
      throw new Error(`unknown Stripe type ${opts.type}; one of: ${Object.keys(STRIPE_SAMPLES).join(', ')}`);
    const event = stripeEvent(
      opts.type,
      { ...sample(), ...opts.override },
      { account: opts.account, id: rid('evt') },
    );
    eventId = event.id;
    body = JSON.stringify(event);
    headers = { 'stripe-signature': signStripe(body, opts.secret) };
  } else {
    const sample = CAL_SAMPLES[opts.type];
    if (!sample)
      throw new Error(`unknown Cal.com trigger ${opts.type}; one of: ${Object.keys(CAL_SAMPLES).join(', ')}`);
    const envelope = sample() as { payload: Record<string, unknown> };
    if (opts.override) envelope.payload = { ...envelope.payload, ...opts.override };
    body = JSON.stringify(envelope);
    headers = { 'x-cal-signature-256': signCal(body, opts.secret) };
  }
  const res = await fetch(route, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return { status: res.status, body: await res.text(), eventId };
}
