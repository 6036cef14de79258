import Stripe from 'stripe';
import type { StripeConversionType } from '../../core/api/v1alpha1/index.js';

/** The Stripe event each conversion type comes from (the mapping ingest's Stripe adapter uses). */
export const CONVERSION_EVENTS: Record<StripeConversionType, string> = {
  checkout_completed: 'checkout.session.completed',
  payment_completed: 'payment_intent.succeeded',
  subscription_created: 'customer.subscription.created',
  subscription_updated: 'customer.subscription.updated',
  invoice_paid: 'invoice.paid',
  charge_succeeded: 'charge.succeeded',
};
/** Always subscribed: stored for the forwarder (PaymentFailed, SubscriptionCancelled) though not conversions. */
export const ALWAYS_ENABLED = ['invoice.payment_failed', 'customer.subscription.deleted'];

export function enabledEvents(types: readonly StripeConversionType[]): string[] {
  return [...new Set([...types.map((t) => CONVERSION_EVENTS[t]), ...ALWAYS_ENABLED])].sort();
}

/** Metadata that marks an endpoint as ours, so a restarted operator finds it instead of creating another. */
export interface EndpointOwner {
  namespace: string;
  name: string;
  uid: string;
}

export interface DesiredEndpoint {
  url: string;
  enabledEvents: string[];
  connect: boolean;
  description: string;
}

export const OWNER_METADATA = 'tally_resource_uid';

export function ownerMetadata(owner: EndpointOwner, connect: boolean): Record<string, string> {
  return {
    tally_managed_by: 'tally-operator',
    tally_resource: `${owner.namespace}/${owner.name}`,
    [OWNER_METADATA]: owner.uid,
    // Stripe does not return `connect`; record it to know when a recreate is needed.
    tally_connect: String(connect),
  };
}

/** A Stripe client for one restricted key; `apiBase` points it elsewhere (a local fake in tests). */
export function stripeClient(apiKey: string, apiBase?: string): Stripe {
  const base = apiBase ? new URL(apiBase) : undefined;
  return new Stripe(apiKey, {
    maxNetworkRetries: 1,
    timeout: 10_000,
    telemetry: false,
    ...(base
      ? {
          host: base.hostname,
          port: Number(base.port || (base.protocol === 'https:' ? 443 : 80)),
          protocol: base.protocol === 'https:' ? 'https' : 'http',
        }
      : {}),
  });
}

/** Every endpoint on the account tagged with this resource's uid. */
export async function findOwnEndpoints(
  stripe: Stripe,
  owner: EndpointOwner,
): Promise<Stripe.WebhookEndpoint[]> {
  const own: Stripe.WebhookEndpoint[] = [];
  for await (const endpoint of stripe.webhookEndpoints.list({ limit: 100 })) {
    if (endpoint.metadata?.[OWNER_METADATA] === owner.uid) own.push(endpoint);
  }
  return own;
}

/** Whether an existing endpoint can be updated in place to the desired one (api_version and connect cannot). */
export function compatible(endpoint: Stripe.WebhookEndpoint, desired: DesiredEndpoint): boolean {
  return (
    endpoint.api_version === Stripe.API_VERSION &&
    endpoint.metadata?.tally_connect === String(desired.connect)
  );
}

export function upToDate(endpoint: Stripe.WebhookEndpoint, desired: DesiredEndpoint): boolean {
  return (
    compatible(endpoint, desired) &&
    endpoint.url === desired.url &&
    endpoint.status === 'enabled' &&
    [...endpoint.enabled_events].sort().join(',') === desired.enabledEvents.join(',')
  );
}

/** A Stripe failure as a condition reason and a message that says what to fix; never echoes the key. */
export interface StripeFailure {
  reason: string;
  message: string;
}

export function classifyStripeError(err: unknown, keyRef: string): StripeFailure {
  if (err instanceof Stripe.errors.StripeAuthenticationError) {
    return {
      reason: 'StripeAuthenticationFailed',
      message: `Stripe rejected the API key in ${keyRef} (401): put a valid restricted key (rk_...) in that Secret.`,
    };
  }
  if (err instanceof Stripe.errors.StripePermissionError) {
    return {
      reason: 'StripePermissionDenied',
      message:
        `The API key in ${keyRef} lacks a permission (403): give the restricted key write access to ` +
        'Webhook Endpoints (and read access to Customers).',
    };
  }
  if (err instanceof Stripe.errors.StripeRateLimitError) {
    return {
      reason: 'StripeRateLimited',
      message: 'Stripe answered 429 Too Many Requests; retrying with backoff.',
    };
  }
  if (err instanceof Stripe.errors.StripeConnectionError) {
    return {
      reason: 'StripeUnreachable',
      message: 'Could not reach the Stripe API; retrying with backoff. Check egress to api.stripe.com.',
    };
  }
  if (err instanceof Stripe.errors.StripeError) {
    const limit = /maximum of 16/i.test(err.message);
    return {
      reason: limit ? 'EndpointLimitReached' : 'StripeRequestFailed',
      message: limit
        ? 'The Stripe account already has 16 webhook endpoints, its maximum: delete an unused one in the Stripe dashboard.'
        : `Stripe answered ${err.statusCode ?? 'an error'} (${err.code ?? err.type}): ${redact(err.message)}`,
    };
  }
  return { reason: 'StripeRequestFailed', message: `Stripe call failed: ${redact(String(err))}` };
}

/** Keys and secrets never reach status or logs, even when an upstream message quotes them. */
export function redact(text: string): string {
  return text.replace(/\b(rk|sk|pk|whsec)_[A-Za-z0-9_*]+/g, '$1_[redacted]').slice(0, 300);
}
