import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IntegrationStats } from '../../core/store/queries.js';
import {
  charge,
  checkoutSession,
  invoice,
  paymentIntent,
  rid,
  signStripe,
  stripeEvent,
  subscription,
} from '../../core/samples/stripe.js';
import { sample, startIngest, STRIPE_SECRET, type IngestUnderTest } from './harness.js';

/** Deterministic shuffles, so a failing order can be reproduced. */
function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** All the events Stripe sends for one subscription bought through Checkout. */
function subscriptionCheckout(currency = 'usd', amount = 2000) {
  const customer = rid('cus');
  const sub = rid('sub');
  const inv = rid('in');
  const pi = rid('pi');
  const ch = rid('ch');
  return [
    stripeEvent(
      'checkout.session.completed',
      checkoutSession({
        mode: 'subscription',
        customer,
        subscription: sub,
        invoice: inv,
        payment_intent: null,
        currency,
        amount_total: amount,
      }),
    ),
    stripeEvent(
      'customer.subscription.created',
      subscription({ id: sub, customer, currency, latest_invoice: inv }, amount),
    ),
    stripeEvent(
      'invoice.paid',
      invoice({
        id: inv,
        customer,
        currency,
        amount_paid: amount,
        amount_due: amount,
        billing_reason: 'subscription_create',
        parent: {
          type: 'subscription_details',
          quote_details: null,
          subscription_details: { metadata: {}, subscription: sub },
        },
      }),
    ),
    stripeEvent(
      'payment_intent.succeeded',
      paymentIntent({
        id: pi,
        customer,
        currency,
        amount: amount,
        amount_received: amount,
        latest_charge: ch,
      }),
    ),
    stripeEvent(
      'charge.succeeded',
      charge({ id: ch, customer, currency, amount, amount_captured: amount, payment_intent: pi }),
    ),
  ];
}

/** A one-off purchase through Checkout by a guest: session, PaymentIntent and Charge share one pi_. */
function oneOffCheckout(currency: string, amount: number) {
  const pi = rid('pi');
  return [
    stripeEvent(
      'checkout.session.completed',
      checkoutSession({ customer: null, payment_intent: pi, currency, amount_total: amount }),
    ),
    stripeEvent(
      'payment_intent.succeeded',
      paymentIntent({ id: pi, customer: null, currency, amount, amount_received: amount }),
    ),
    stripeEvent(
      'charge.succeeded',
      charge({ customer: null, payment_intent: pi, currency, amount, amount_captured: amount }),
    ),
  ];
}

const INTEGRATIONS = Array.from({ length: 12 }, (_, i) => `shop-${i}`);

describe('ingest: one payment counts once, however many events report it', () => {
  let ingest: IngestUnderTest;
  beforeAll(async () => {
    ingest = await startIngest((base) => ({
      ...base,
      stripe: INTEGRATIONS.map((name) => ({ namespace: 'growth', name, signingSecrets: [STRIPE_SECRET] })),
    }));
  });
  afterAll(() => ingest.close());

  async function deliverAll(integration: string, events: object[]) {
    // Several providers' retries at once: the same events concurrently, in the given order.
    const results = await Promise.all(
      events.map(async (event) => {
        const body = JSON.stringify(event);
        return ingest.post(`/webhooks/stripe/growth/${integration}`, body, {
          'stripe-signature': signStripe(body, STRIPE_SECRET),
        });
      }),
    );
    for (const r of results) expect(r.status).toBe(200);
  }

  async function revenue(integration: string) {
    const { body } = await ingest.admin<IntegrationStats>(`/api/v1/stats?integration=growth/${integration}`);
    return body;
  }

  it.each([1, 2, 3, 4, 5, 6])(
    'a subscription bought through Checkout (5 events, shuffled with seed %i, with duplicates) is 20.00 USD once',
    async (seed) => {
      const integration = INTEGRATIONS[seed - 1]!;
      const events = subscriptionCheckout();
      const withDuplicates = shuffled([...events, ...events.slice(0, 2 + (seed % 3))], seed);
      // Half at once, the rest afterwards: both concurrent batches and later arrivals.
      await deliverAll(integration, withDuplicates.slice(0, 3));
      await deliverAll(integration, withDuplicates.slice(3));
      const stats = await revenue(integration);
      expect(stats.revenue['24h']).toEqual([{ currency: 'USD', amountMinor: 2000, amount: '20.00' }]);
      expect(stats.revenue['30d']).toEqual(stats.revenue['24h']);
      expect(stats.counts).toEqual({
        charge_succeeded: 1,
        checkout_completed: 1,
        invoice_paid: 1,
        payment_completed: 1,
        subscription_created: 1,
      });
    },
  );

  it('one-off checkouts count once per PaymentIntent, in each currency’s own decimals', async () => {
    const integration = INTEGRATIONS[6]!;
    const usd = oneOffCheckout('usd', 5000);
    const jpy = oneOffCheckout('jpy', 980);
    const kwd = oneOffCheckout('kwd', 1250);
    await deliverAll(integration, shuffled([...usd, ...jpy, ...kwd, usd[1]!, jpy[2]!], 42));
    expect((await revenue(integration)).revenue['24h']).toEqual([
      { currency: 'JPY', amountMinor: 980, amount: '980' },
      { currency: 'KWD', amountMinor: 1250, amount: '1.250' },
      { currency: 'USD', amountMinor: 5000, amount: '50.00' },
    ]);
  });

  it('a renewal invoice and its PaymentIntent are one payment; two renewals are two', async () => {
    const integration = INTEGRATIONS[7]!;
    const customer = rid('cus');
    const renewal = () => {
      const pi = rid('pi');
      return [
        stripeEvent(
          'invoice.paid',
          invoice({ customer, amount_paid: 2000, billing_reason: 'subscription_cycle' }),
        ),
        stripeEvent('payment_intent.succeeded', paymentIntent({ id: pi, customer, amount_received: 2000 })),
        stripeEvent('charge.succeeded', charge({ customer, payment_intent: pi, amount_captured: 2000 })),
      ];
    };
    await deliverAll(integration, renewal());
    await deliverAll(integration, renewal().reverse());
    expect((await revenue(integration)).revenue['24h']).toEqual([
      { currency: 'USD', amountMinor: 4000, amount: '40.00' },
    ]);
  });

  it('an invoice that names its PaymentIntent (older API versions) links it exactly', async () => {
    const integration = INTEGRATIONS[8]!;
    const pi = rid('pi');
    // Different amounts on purpose: only the explicit link, not the customer/amount match, can join them.
    const old = stripeEvent('invoice.paid', {
      ...invoice({ customer: 'cus_a', amount_paid: 1500 }),
      payment_intent: pi,
    });
    const intent = stripeEvent(
      'payment_intent.succeeded',
      paymentIntent({ id: pi, customer: 'cus_b', amount_received: 1500 }),
    );
    await deliverAll(integration, [intent]);
    await deliverAll(integration, [old]);
    expect((await revenue(integration)).revenue['24h']).toEqual([
      { currency: 'USD', amountMinor: 1500, amount: '15.00' },
    ]);
  });

  it('a customer’s same-amount payments count each; an invoice pairs only with a PaymentIntent within 24 h', async () => {
    const integration = INTEGRATIONS[10]!;
    const customer = rid('cus');
    const intents = Array.from({ length: 8 }, () =>
      stripeEvent(
        'payment_intent.succeeded',
        paymentIntent({ customer, amount: 1000, amount_received: 1000 }),
      ),
    );
    // At once, so most share a batch: PaymentIntents of one customer and amount are not partners of each other.
    await deliverAll(integration, intents);
    expect((await revenue(integration)).revenue['30d']).toEqual([
      { currency: 'USD', amountMinor: 8000, amount: '80.00' },
    ]);
    // Two days before them: no PaymentIntent within 24 h, so a payment of its own.
    const twoDaysAgo = Math.floor(Date.now() / 1000) - 2 * 86_400;
    await deliverAll(integration, [
      stripeEvent('invoice.paid', invoice({ customer, amount_paid: 1000, amount_due: 1000 }), {
        created: twoDaysAgo,
      }),
    ]);
    // Now: it is one of the eight PaymentIntents' invoice.
    await deliverAll(integration, [
      stripeEvent('invoice.paid', invoice({ customer, amount_paid: 1000, amount_due: 1000 })),
    ]);
    expect((await revenue(integration)).revenue['30d']).toEqual([
      { currency: 'USD', amountMinor: 9000, amount: '90.00' },
    ]);
  });

  it('a free trial and an unpaid asynchronous checkout add no revenue', async () => {
    const integration = INTEGRATIONS[9]!;
    await deliverAll(integration, [
      stripeEvent(
        'checkout.session.completed',
        checkoutSession({
          mode: 'subscription',
          amount_total: 0,
          invoice: rid('in'),
          payment_status: 'no_payment_required',
        }),
      ),
      stripeEvent('invoice.paid', invoice({ amount_paid: 0, amount_due: 0 })),
      stripeEvent(
        'checkout.session.completed',
        checkoutSession({ payment_status: 'unpaid', amount_total: 3000 }),
      ),
    ]);
    const stats = await revenue(integration);
    expect(stats.revenue['24h']).toEqual([]);
    expect(stats.counts).toEqual({ checkout_completed: 2, invoice_paid: 1 });
  });

  it('the revenue counter agrees with the stats API', async () => {
    const metrics = await ingest.metrics();
    for (const integration of INTEGRATIONS.slice(0, 11)) {
      const stats = await revenue(integration);
      for (const total of stats.revenue['30d']) {
        expect(
          sample(metrics, 'tally_ingest_revenue_minor_units_total', {
            integration: `growth/${integration}`,
            currency: total.currency,
          }),
          `${integration} ${total.currency}`,
        ).toBe(total.amountMinor);
      }
    }
  });
});
