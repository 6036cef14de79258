import Stripe from 'stripe';
import { pickAttribution, type MoneyMovement, type NormalizedEvent } from '../../core/conversion.js';
import { integrationId, type StripeIntegrationConfig } from '../../core/config/tally-config.js';
import { money, type Money } from '../../core/money.js';
import { asArray, asObj, compact, num, str, type Obj } from './json-fields.js';
import { WebhookRejection, type Ignored } from './rejection.js';

/** Stripe event types → Tally conversion types. */
const CONVERSIONS: Record<string, string> = {
  'checkout.session.completed': 'checkout_completed',
  'payment_intent.succeeded': 'payment_completed',
  'customer.subscription.created': 'subscription_created',
  'customer.subscription.updated': 'subscription_updated',
  'invoice.paid': 'invoice_paid',
  'charge.succeeded': 'charge_succeeded',
};
/** Not conversions, but the Meta forwarder needs them (PaymentFailed, SubscriptionCancelled). */
const STORED_ONLY = new Set(['invoice.payment_failed', 'customer.subscription.deleted']);
/** The Stripe events a MetaPixel turns into Conversions API events. */
export const META_EVENT_TYPES = new Set([
  'checkout.session.completed',
  'customer.subscription.created',
  'invoice.paid',
  'invoice.payment_failed',
  'customer.subscription.deleted',
]);

/**
 * Checks `Stripe-Signature` against each configured signing secret (several while one is rolled) on
 * the exact bytes received, with the `stripe` package, and parses the event. Throws a
 * WebhookRejection naming the cause: the body is parsed only once its signature holds.
 */
export function verifyStripeEvent(
  raw: Buffer,
  header: unknown,
  secrets: string[],
  toleranceSeconds: number,
): Envelope {
  if (typeof header !== 'string' || header === '') {
    throw new WebhookRejection(400, 'missing_signature', 'The Stripe-Signature header is missing.');
  }
  let stale = false;
  let malformed = false;
  for (const secret of secrets) {
    let event: unknown;
    try {
      event = Stripe.webhooks.constructEvent(raw, header, secret, toleranceSeconds);
    } catch (err) {
      if (err instanceof SyntaxError) {
        throw new WebhookRejection(
          400,
          'invalid_json',
          'The body is signed correctly but is not valid JSON.',
        );
      }
      const message = err instanceof Error ? err.message : '';
      // Raised only after the signature held: a v2 "thin" event notification.
      if (message.includes('thin event')) {
        throw new WebhookRejection(
          400,
          'thin_event',
          'Thin (v2) events are not supported: send snapshot events from a v1 webhook endpoint.',
        );
      }
      // The package checks the signature before the timestamp, so "outside the tolerance zone" means
      // this secret signed it, too long ago.
      if (message.includes('tolerance zone')) stale = true;
      if (message.includes('Unable to extract timestamp and signatures')) malformed = true;
      continue;
    }
    return checkEnvelope(event);
  }
  if (stale) {
    throw new WebhookRejection(
      400,
      'stale_timestamp',
      `The signature's timestamp is more than ${toleranceSeconds} seconds old; a replayed or delayed delivery.`,
    );
  }
  if (malformed) {
    throw new WebhookRejection(
      400,
      'malformed_signature',
      'The Stripe-Signature header has no t= and v1= values.',
    );
  }
  throw new WebhookRejection(
    400,
    'invalid_signature',
    'No signature matches a signing secret of this integration: check the endpoint secret (test vs live, Connect).',
  );
}

/** The fields of a Stripe event envelope Tally relies on, checked after the signature. */
interface Envelope {
  id: string;
  object: string;
  type: string;
  created: number;
  livemode?: boolean;
  account?: string;
  data: { object: Record<string, unknown>; previous_attributes?: Record<string, unknown> };
}

function checkEnvelope(body: unknown): Envelope {
  const e = body as Partial<Envelope> | null;
  if (
    typeof e?.id !== 'string' ||
    e.object !== 'event' ||
    typeof e.type !== 'string' ||
    typeof e.created !== 'number' ||
    typeof e.data?.object !== 'object' ||
    e.data.object === null
  ) {
    throw new WebhookRejection(
      400,
      'invalid_payload',
      'The body is not a Stripe event (id, type, created, data.object).',
    );
  }
  return e as Envelope;
}

/** Turns a verified Stripe event into what Tally stores, or says why it is ignored. */
export function normaliseStripeEvent(
  event: Envelope,
  raw: string,
  integration: StripeIntegrationConfig,
  destinationsFor: (providerType: string) => string[],
): NormalizedEvent | Ignored {
  if (integration.connectAccountId && event.account !== integration.connectAccountId) {
    return { kind: 'ignored', reason: 'other_account' };
  }
  const conversionType = CONVERSIONS[event.type];
  if (!conversionType && !STORED_ONLY.has(event.type)) return { kind: 'ignored', reason: 'untracked_type' };
  if (conversionType && !(integration.conversionTypes as string[]).includes(conversionType)) {
    return { kind: 'ignored', reason: 'type_not_tracked' };
  }

  const facts = OBJECT_FACTS[event.type]!(event.data.object, event.data.previous_attributes);
  return {
    source: 'stripe',
    integration: integrationId(integration),
    idempotencyKey: `${event.account ?? 'self'}:${event.id}`,
    providerEventId: event.id,
    providerType: event.type,
    conversionType,
    occurredAt: new Date(event.created * 1000),
    amount: facts.amount,
    money: facts.money,
    customerId: facts.customerId,
    customerEmail: facts.customerEmail,
    account: event.account,
    livemode: event.livemode,
    attribution: facts.attribution,
    details: facts.details,
    payload: raw,
    destinations: META_EVENT_TYPES.has(event.type) ? destinationsFor(event.type) : [],
  };
}

interface ObjectFacts {
  amount?: Money;
  money?: MoneyMovement;
  customerId?: string;
  customerEmail?: string;
  attribution: Record<string, string>;
  details: Record<string, unknown>;
}

const OBJECT_FACTS: Record<string, (o: Obj, previous?: Obj) => ObjectFacts> = {
  'checkout.session.completed': (o) => {
    const amount = amountOf(o.amount_total, o.currency);
    const paid = o.payment_status === 'paid';
    const invoice = idOf(o.invoice);
    const paymentIntent = idOf(o.payment_intent);
    // Subscription checkouts are paid by their first invoice; one-off checkouts by their PaymentIntent.
    const key =
      o.mode === 'subscription' && invoice
        ? `invoice:${invoice}`
        : paymentIntent
          ? `payment_intent:${paymentIntent}`
          : `checkout:${str(o.id)}`;
    const details = asObj(o.customer_details);
    return {
      amount,
      money: paid ? movement(key, amount) : undefined,
      customerId: idOf(o.customer),
      customerEmail: str(details.email) ?? str(o.customer_email),
      attribution: pickAttribution(asObj(o.metadata)),
      details: compact({
        checkoutSession: str(o.id),
        mode: str(o.mode),
        paymentStatus: str(o.payment_status),
        paymentIntent,
        subscription: idOf(o.subscription),
        invoice,
        clientReferenceId: str(o.client_reference_id),
        successUrl: str(o.success_url),
        customerName: str(details.name),
        customerPhone: str(details.phone),
        customerAddress: details.address ?? undefined,
      }),
    };
  },
  'payment_intent.succeeded': (o) => {
    const amount = amountOf(o.amount_received ?? o.amount, o.currency);
    const charge = typeof o.latest_charge === 'object' ? asObj(o.latest_charge) : {};
    return {
      amount,
      money: movement(`payment_intent:${str(o.id)}`, amount),
      customerId: idOf(o.customer),
      customerEmail: str(o.receipt_email) ?? str(asObj(charge.billing_details).email),
      attribution: pickAttribution(asObj(o.metadata)),
      details: compact({
        paymentIntent: str(o.id),
        description: str(o.description),
        latestCharge: idOf(o.latest_charge),
      }),
    };
  },
  'charge.succeeded': (o) => {
    // An authorisation that is not captured moves no money yet.
    const amount = amountOf(o.captured === false ? 0 : (o.amount_captured ?? o.amount), o.currency);
    const paymentIntent = idOf(o.payment_intent);
    const billing = asObj(o.billing_details);
    return {
      amount,
      money: movement(paymentIntent ? `payment_intent:${paymentIntent}` : `charge:${str(o.id)}`, amount),
      customerId: idOf(o.customer),
      customerEmail: str(billing.email) ?? str(o.receipt_email),
      attribution: pickAttribution(asObj(o.metadata)),
      details: compact({ charge: str(o.id), paymentIntent, captured: o.captured }),
    };
  },
  'invoice.paid': (o) => invoiceFacts(o, o.amount_paid, true),
  'invoice.payment_failed': (o) => invoiceFacts(o, o.amount_due, false),
  'customer.subscription.created': (o) => subscriptionFacts(o),
  'customer.subscription.updated': (o, previous) => subscriptionFacts(o, previous),
  'customer.subscription.deleted': (o) => subscriptionFacts(o),
};

function invoiceFacts(o: Obj, amountField: unknown, paid: boolean): ObjectFacts {
  const amount = amountOf(amountField, o.currency);
  // Current API versions: parent.subscription_details; older ones: subscription and payment_intent on the invoice.
  const subscriptionDetails = asObj(asObj(o.parent).subscription_details);
  const subscription = idOf(subscriptionDetails.subscription) ?? idOf(o.subscription);
  const paymentIntents = [
    idOf(o.payment_intent),
    ...asArray(asObj(o.payments).data).map((p) => idOf(asObj(asObj(p).payment).payment_intent)),
  ].filter((x): x is string => Boolean(x));
  return {
    amount,
    money: paid
      ? movement(
          `invoice:${str(o.id)}`,
          amount,
          [...new Set(paymentIntents)].map((pi) => `payment_intent:${pi}`),
        )
      : undefined,
    customerId: idOf(o.customer),
    customerEmail: str(o.customer_email),
    attribution: pickAttribution(asObj(o.metadata), asObj(subscriptionDetails.metadata)),
    details: compact({
      invoice: str(o.id),
      billingReason: str(o.billing_reason),
      subscription,
      attemptCount: num(o.attempt_count),
      nextPaymentAttempt: num(o.next_payment_attempt),
      customerName: str(o.customer_name),
      customerPhone: str(o.customer_phone),
      customerAddress: o.customer_address ?? undefined,
    }),
  };
}

function subscriptionFacts(o: Obj, previous?: Obj): ObjectFacts {
  const items = asArray(asObj(o.items).data).map((i) => asObj(i));
  // The recurring value of the subscription; no money moves on these events, so no movement.
  let total = 0;
  let priced = items.length > 0;
  for (const item of items) {
    const unit = asObj(item.price).unit_amount;
    const quantity = typeof item.quantity === 'number' ? item.quantity : 1;
    if (typeof unit !== 'number') priced = false;
    else total += unit * quantity;
  }
  return {
    amount: priced ? amountOf(total, o.currency) : undefined,
    customerId: idOf(o.customer),
    attribution: pickAttribution(asObj(o.metadata)),
    details: compact({
      subscription: str(o.id),
      status: str(o.status),
      trialEnd: num(o.trial_end),
      cancellationReason: str(asObj(o.cancellation_details).reason),
      items: items.map((i) => compact({ price: idOf(i.price), quantity: i.quantity as number | undefined })),
      changed: previous ? Object.keys(previous).sort() : undefined,
    }),
  };
}

function movement(key: string, amount: Money | undefined, aliases: string[] = []): MoneyMovement | undefined {
  // $0 (trials, no_payment_required) moves no money.
  return amount && amount.minor > 0 ? { key, amount, aliases } : undefined;
}

function amountOf(value: unknown, currency: unknown): Money | undefined {
  if (typeof value !== 'number' || typeof currency !== 'string') return undefined;
  return money(value, currency);
}

/** An expandable field: an id string, or the expanded object with an id. */
function idOf(value: unknown): string | undefined {
  if (typeof value === 'string' && value !== '') return value;
  if (value && typeof value === 'object' && typeof (value as Obj).id === 'string')
    return (value as Obj).id as string;
  return undefined;
}
