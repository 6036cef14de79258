import { formatDecimal, toMajorNumber } from '../core/money.js';
import {
  MAX_EVENT_AGE_SECONDS,
  type ActionSource,
  type CustomData,
  type ServerEvent,
  type UserData,
} from './meta/event.js';
import { buildUserData, type RawUserData, type UserDataResult } from './meta/user-data.js';
import type { CustomerFacts } from './stripe-customers.js';

/**
 * Turns a stored Stripe event (the `events` row the outbox points at) into one Conversions API server
 * event. Pure: the clock and the Stripe customer are passed in. Reads only the normalised columns
 * (details, attribution, amount, customer), never the raw payload, so mapping stays cheap.
 */

export interface StoredEvent {
  integration: string;
  providerType: string;
  occurredAt: Date;
  amountMinor: number | null;
  currency: string | null;
  customerId: string | null;
  customerEmail: string | null;
  account: string | null;
  attribution: Record<string, string>;
  details: Record<string, unknown>;
}

/** What each Stripe event becomes; a MetaPixel may rename any of them. */
export type MappingKind =
  'checkout' | 'subscribe' | 'trial' | 'invoice_paid' | 'payment_failed' | 'cancelled';

export const DEFAULT_EVENT_NAMES: Record<MappingKind, string> = {
  checkout: 'Purchase',
  subscribe: 'Subscribe',
  trial: 'StartTrial',
  invoice_paid: 'Purchase',
  payment_failed: 'PaymentFailed',
  cancelled: 'SubscriptionCancelled',
};

export type EventNames = Partial<Record<MappingKind, string>>;

export type Mapped =
  | {
      kind: 'send';
      event: ServerEvent;
      /**
       * Set for the two events that report one subscription's first payment (its checkout session and
       * the invoice with billing_reason subscription_create): both carry this as event_id, and the
       * forwarder sends only the first of them (see oneCharge below).
       */
      sharedPurchaseId?: string;
    }
  | { kind: 'skip'; reason: string }
  | { kind: 'dead'; reason: 'too_old' | 'unmappable'; message: string };

export interface MapOptions {
  /** Unix seconds. */
  now: number;
  names?: EventNames;
  /** Stripe customer fetched for this event, when the event lacks what it holds. */
  customer?: CustomerFacts;
}

const PLAIN_KEYS = ['client_ip', 'client_user_agent', 'fbc', 'fbp'] as const;

/** Whether the Stripe customer could add something the stored event lacks (attribution or e-mail). */
export function wantsCustomer(e: StoredEvent): boolean {
  if (!e.customerId) return false;
  return !e.customerEmail || PLAIN_KEYS.some((k) => !e.attribution[k]);
}

export function mapEvent(e: StoredEvent, opts: MapOptions): Mapped {
  const d = e.details;
  const s = (key: string) => (typeof d[key] === 'string' && d[key] !== '' ? d[key] : undefined);
  let kind: MappingKind;
  let eventId: string | undefined;
  let withValue = false;
  let mayBeWebsite = true;
  let sharedPurchaseId: string | undefined;

  switch (e.providerType) {
    case 'checkout.session.completed': {
      if (s('paymentStatus') !== 'paid') return { kind: 'skip', reason: 'checkout_not_paid' };
      if (!e.amountMinor) return { kind: 'skip', reason: 'zero_amount' };
      kind = 'checkout';
      withValue = true;
      // One purchase rule: a subscription checkout is paid by its first invoice. Both events get the
      // invoice id as event_id (Meta keeps the first of an event_id + event_name within 48 h) and the
      // forwarder sends only the first of the two it sees; see PixelWorker.process.
      const invoice = s('invoice');
      if (s('mode') === 'subscription' && invoice) {
        eventId = invoice;
        sharedPurchaseId = invoice;
      } else {
        eventId = s('checkoutSession');
      }
      break;
    }
    case 'invoice.paid': {
      if (!e.amountMinor) return { kind: 'skip', reason: 'zero_amount' };
      kind = 'invoice_paid';
      withValue = true;
      eventId = s('invoice');
      if (s('billingReason') === 'subscription_create') sharedPurchaseId = eventId;
      else mayBeWebsite = false; // renewals and manual invoices happen without the customer's browser
      break;
    }
    case 'customer.subscription.created': {
      const trialing = s('status') === 'trialing';
      kind = trialing ? 'trial' : 'subscribe';
      withValue = !trialing;
      eventId = s('subscription');
      break;
    }
    case 'invoice.payment_failed': {
      kind = 'payment_failed';
      mayBeWebsite = false;
      const invoice = s('invoice');
      const attempt = typeof d.attemptCount === 'number' ? d.attemptCount : 0;
      eventId = invoice ? `${invoice}:payment_failed:${attempt}` : undefined;
      break;
    }
    case 'customer.subscription.deleted': {
      kind = 'cancelled';
      mayBeWebsite = false;
      const sub = s('subscription');
      eventId = sub ? `${sub}:deleted` : undefined;
      break;
    }
    default:
      return { kind: 'skip', reason: 'not_forwarded_type' };
  }
  if (!eventId) {
    return { kind: 'dead', reason: 'unmappable', message: `${e.providerType} without an object id` };
  }

  // Stripe's event.created: real time even for test clocks. Never in the future (clock skew).
  const eventTime = Math.min(Math.floor(e.occurredAt.getTime() / 1000), opts.now);
  if (opts.now - eventTime > MAX_EVENT_AGE_SECONDS) {
    return {
      kind: 'dead',
      reason: 'too_old',
      message: `occurred ${new Date(eventTime * 1000).toISOString()}, more than 7 days ago: Meta accepts events up to 7 days old`,
    };
  }

  let custom: CustomData | undefined;
  if (withValue) {
    if (e.amountMinor === null || e.currency === null) {
      if (kind === 'checkout' || kind === 'invoice_paid') {
        return { kind: 'dead', reason: 'unmappable', message: 'a purchase without amount and currency' };
      }
    } else {
      // Exact decimal from integer minor units with Stripe's exponent (JPY 0, KWD 3 decimals).
      custom = { value: toMajorNumber({ minor: e.amountMinor, currency: e.currency }), currency: e.currency };
      if (kind === 'checkout' || kind === 'invoice_paid') custom.order_id = eventId;
    }
  }

  const customer = opts.customer?.deleted ? undefined : opts.customer;
  const meta = customer?.metadata ?? {};
  const pick = (key: string) => e.attribution[key] ?? meta[key];
  const address = asRecord(d.customerAddress) ?? customer?.address ?? {};
  const name = s('customerName') ?? customer?.name;
  const [first, ...rest] = (name ?? '').trim().split(/\s+/);
  const country = str(address.country);
  // Names and addresses repeat across customers (and country and state always do): their hashes are
  // memoised. The customer's own identifiers (e-mail, phone, id) are hashed every time.
  const named = memo(names, `${first}\u0000${rest[rest.length - 1] ?? ''}`, () =>
    buildUserData({ fn: first || undefined, ln: rest.length > 0 ? rest[rest.length - 1] : undefined }),
  );
  const place = memo(
    places,
    `${str(address.city)}\u0000${str(address.state)}\u0000${str(address.postal_code)}\u0000${country}`,
    () =>
      buildUserData({
        ct: str(address.city),
        st: str(address.state),
        zp: str(address.postal_code),
        country,
      }),
  );
  const raw: RawUserData = {
    em: e.customerEmail ?? customer?.email,
    ph: s('customerPhone') ?? customer?.phone,
    external_id: e.customerId,
    client_ip_address: pick('client_ip'),
    client_user_agent: pick('client_user_agent'),
    fbc: pick('fbc'),
    fbp: pick('fbp'),
  };
  // The phone's country code comes from the address, as buildUserData would take it from `country`.
  const own = buildUserData(raw, country ? { defaultCountry: country } : {}).userData;
  const userData: UserData = Object.assign(own, named.userData, place.userData);

  const url = pick('event_source_url') ?? (kind === 'checkout' ? successUrl(s('successUrl'), e) : undefined);
  const sourceUrl = url && isHttpUrl(url) ? url : undefined;
  const actionSource: ActionSource =
    mayBeWebsite && sourceUrl && userData.client_user_agent ? 'website' : 'system_generated';

  const event: ServerEvent = {
    event_name: opts.names?.[kind] ?? DEFAULT_EVENT_NAMES[kind],
    event_time: eventTime,
    event_id: eventId,
    action_source: actionSource,
    user_data: userData,
  };
  if (sourceUrl) event.event_source_url = sourceUrl;
  if (custom) event.custom_data = custom;
  return sharedPurchaseId ? { kind: 'send', event, sharedPurchaseId } : { kind: 'send', event };
}

const names = new Map<string, UserDataResult>();
const places = new Map<string, UserDataResult>();
const MEMO_ENTRIES = 10_000;

/** A bounded memo: the oldest entry goes when it is full. */
function memo(cache: Map<string, UserDataResult>, key: string, make: () => UserDataResult): UserDataResult {
  let hit = cache.get(key);
  if (hit === undefined) {
    hit = make();
    if (cache.size >= MEMO_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(key, hit);
  }
  return hit;
}

/** Checkout's success_url may hold Stripe's `{CHECKOUT_SESSION_ID}` template. */
function successUrl(url: string | undefined, e: StoredEvent): string | undefined {
  const session = typeof e.details.checkoutSession === 'string' ? e.details.checkoutSession : '';
  return url?.replace('{CHECKOUT_SESSION_ID}', session);
}

function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return u.protocol === 'https:' || u.protocol === 'http:';
  } catch {
    return false;
  }
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** For logs and the dead-letter API: the revenue an event carries, exact. */
export function describeAmount(e: StoredEvent): string | undefined {
  return e.amountMinor !== null && e.currency !== null
    ? `${formatDecimal(e.amountMinor, e.currency)} ${e.currency}`
    : undefined;
}
