import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningForwarder } from '../../forwarder/main.js';
import type { DeliveredEvent } from '../fakes/meta/server.js';
import { customer } from '../fakes/stripe-customers/server.js';
import { checkoutSession, invoice, rid, stripeEvent, subscription } from '../../core/samples/stripe.js';
import { baseConfig, createEnv, outboxStatus, PIXEL_ID, TOKEN, waitFor, type Env } from './harness.js';

const sha = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const TEST_PIXEL_ID = '223456789012345';

let env: Env;
let forwarder: RunningForwarder;

beforeAll(async () => {
  env = await createEnv('fwdmap');
  env.meta.state.addPixel(TEST_PIXEL_ID, { tokens: [TOKEN] });
  const config = baseConfig(env.url);
  config.metaPixels.push({
    namespace: 'growth',
    name: 'test-pixel',
    pixelId: TEST_PIXEL_ID,
    accessToken: TOKEN,
    testEventCode: 'TEST12345',
  });
  await env.writeConfig(config);
  forwarder = await env.start();
});
afterAll(async () => {
  await env?.close();
});

const pixel = () => env.meta.state.pixel(PIXEL_ID);

/** The first delivery of event_id to the main pixel, once it arrives. */
async function delivered(eventId: string, pixelId = PIXEL_ID): Promise<DeliveredEvent> {
  let found: DeliveredEvent | undefined;
  await waitFor(() => {
    found = env.meta.state.pixel(pixelId).delivered.find((d) => d.eventId === eventId);
    return found !== undefined;
  }, `delivery of ${eventId}`);
  return found!;
}

async function outboxRow(providerEventId: string) {
  const { rows } = await env.pool.query<{
    status: number;
    failure_reason: string | null;
    last_error: string | null;
  }>(
    `SELECT o.status, o.failure_reason, o.last_error FROM outbox o JOIN events e ON e.id = o.event_id
      WHERE e.provider_event_id = $1`,
    [providerEventId],
  );
  return rows[0];
}

async function settled(providerEventId: string) {
  await waitFor(
    async () => ((await outboxRow(providerEventId))?.status ?? 0) !== 0,
    `${providerEventId} settled`,
  );
  return (await outboxRow(providerEventId))!;
}

describe('mapping Stripe events to Conversions API events', () => {
  it('a paid one-off checkout becomes a website Purchase with exact value, hashed customer data and unhashed click ids', async () => {
    const cus = rid('cus');
    const session = checkoutSession({
      customer: cus,
      amount_total: 123456,
      currency: 'usd',
      metadata: {
        fbc: 'fb.1.1700000000000.IwAR2xYzAbC',
        fbp: 'fb.1.1700000000000.1234567890',
        client_ip: '2001:db8::1',
        client_user_agent: 'Mozilla/5.0 (Macintosh)',
        event_source_url: 'https://shop.example.com/checkout',
      },
    });
    const event = stripeEvent('checkout.session.completed', session);
    await env.ingest([event]);
    const d = await delivered(session.id);
    expect(d.eventName).toBe('Purchase');
    expect(d.eventTime).toBe(event.created);
    expect(d.testEventCode).toBeUndefined();
    expect(d.event.action_source).toBe('website');
    expect(d.event.event_source_url).toBe('https://shop.example.com/checkout');
    expect(d.event.custom_data).toEqual({ value: 1234.56, currency: 'USD', order_id: session.id });
    const u = d.event.user_data;
    expect(u.em).toEqual([sha('jenny.rosen@example.com')]);
    expect(u.ph).toEqual([sha('14155550123')]);
    expect(u.fn).toEqual([sha('jenny')]);
    expect(u.ln).toEqual([sha('rosen')]);
    expect(u.ct).toEqual([sha('sanfrancisco')]);
    expect(u.st).toEqual([sha('ca')]);
    expect(u.zp).toEqual([sha('94103')]);
    expect(u.country).toEqual([sha('us')]);
    expect(u.external_id).toEqual([sha(cus)]);
    expect(u.fbc).toBe('fb.1.1700000000000.IwAR2xYzAbC');
    expect(u.fbp).toBe('fb.1.1700000000000.1234567890');
    expect(u.client_ip_address).toBe('2001:db8::1');
    expect(u.client_user_agent).toBe('Mozilla/5.0 (Macintosh)');
  });

  it('normalises tricky customer data as Meta documents it before hashing', async () => {
    const session = checkoutSession({
      customer: null,
      currency: 'eur',
      amount_total: 4990,
      customer_details: {
        email: '  Valery.OBrien@Example.COM ',
        name: "Valéry  O'Brien-Smith",
        phone: '(650) 555-1212',
        address: {
          city: 'South San Francisco',
          country: 'US',
          line1: '1 Main St',
          line2: null,
          postal_code: '94080-1234',
          state: 'California',
        },
        tax_exempt: 'none',
        tax_ids: [],
      },
    });
    await env.ingest([stripeEvent('checkout.session.completed', session)]);
    const d = await delivered(session.id);
    const u = d.event.user_data;
    expect(u.em).toEqual([sha('valery.obrien@example.com')]);
    expect(u.fn).toEqual([sha('valéry')]);
    expect(u.ln).toEqual([sha('obriensmith')]);
    // A national US number gets its country code.
    expect(u.ph).toEqual([sha('16505551212')]);
    expect(u.ct).toEqual([sha('southsanfrancisco')]);
    expect(u.st).toEqual([sha('ca')]);
    expect(u.zp).toEqual([sha('94080')]);
    expect(u.country).toEqual([sha('us')]);
    expect(u.external_id).toBeUndefined();
    // No user agent and URL known: not a website event.
    expect(d.event.action_source).toBe('system_generated');
    expect(d.event.custom_data).toMatchObject({ value: 49.9, currency: 'EUR' });
  });

  it('sends zero- and three-decimal currencies with Stripe exponents', async () => {
    const yen = checkoutSession({ currency: 'jpy', amount_total: 9800 });
    const dinar = checkoutSession({ currency: 'kwd', amount_total: 1505 });
    await env.ingest([
      stripeEvent('checkout.session.completed', yen),
      stripeEvent('checkout.session.completed', dinar),
    ]);
    expect((await delivered(yen.id)).event.custom_data).toMatchObject({ value: 9800, currency: 'JPY' });
    expect((await delivered(dinar.id)).event.custom_data).toMatchObject({ value: 1.505, currency: 'KWD' });
  });

  it('maps subscriptions, trials, failed payments and cancellations with deterministic event ids', async () => {
    const active = subscription({ status: 'active' }, 1500, 2);
    const trial = subscription({ status: 'trialing', trial_end: Math.floor(Date.now() / 1000) + 86400 * 14 });
    const failed = invoice({ attempt_count: 2, amount_due: 2000, amount_paid: 0, status: 'open' });
    const cancelled = subscription({ status: 'canceled' });
    await env.ingest([
      stripeEvent('customer.subscription.created', active),
      stripeEvent('customer.subscription.created', trial),
      stripeEvent('invoice.payment_failed', failed),
      stripeEvent('customer.subscription.deleted', cancelled),
    ]);
    const sub = await delivered(active.id);
    expect(sub.eventName).toBe('Subscribe');
    expect(sub.event.custom_data).toEqual({ value: 30, currency: 'USD' });
    const start = await delivered(trial.id);
    expect(start.eventName).toBe('StartTrial');
    expect(start.event.custom_data).toBeUndefined();
    const pf = await delivered(`${failed.id}:payment_failed:2`);
    expect(pf.eventName).toBe('PaymentFailed');
    expect(pf.event.action_source).toBe('system_generated');
    expect(pf.event.custom_data).toBeUndefined();
    expect(pf.event.user_data.em).toEqual([sha('jenny.rosen@example.com')]);
    const cancel = await delivered(`${cancelled.id}:deleted`);
    expect(cancel.eventName).toBe('SubscriptionCancelled');
    expect(cancel.event.action_source).toBe('system_generated');
  });

  it('sets test_event_code for a pixel that has one', async () => {
    const session = checkoutSession();
    await env.ingest([stripeEvent('checkout.session.completed', session)], ['meta:growth/test-pixel']);
    const d = await delivered(session.id, TEST_PIXEL_ID);
    expect(d.testEventCode).toBe('TEST12345');
  });

  it('skips unpaid checkouts and $0 invoices instead of sending a Purchase', async () => {
    const unpaid = checkoutSession({ payment_status: 'unpaid' });
    const trialInvoice = invoice({ amount_paid: 0, amount_due: 0, billing_reason: 'subscription_create' });
    const e1 = stripeEvent('checkout.session.completed', unpaid);
    const e2 = stripeEvent('invoice.paid', trialInvoice);
    await env.ingest([e1, e2]);
    expect(await settled(e1.id)).toMatchObject({ status: 3, failure_reason: 'checkout_not_paid' });
    expect(await settled(e2.id)).toMatchObject({ status: 3, failure_reason: 'zero_amount' });
    expect(pixel().delivered.some((d) => d.eventId === unpaid.id || d.eventId === trialInvoice.id)).toBe(
      false,
    );
  });

  it('dead-letters events older than Meta’s 7-day window with the reason, without sending them', async () => {
    const old = checkoutSession();
    const event = stripeEvent('checkout.session.completed', old, {
      created: Math.floor(Date.now() / 1000) - 8 * 86400,
    });
    await env.ingest([event]);
    const row = await settled(event.id);
    expect(row.status).toBe(2);
    expect(row.failure_reason).toBe('too_old');
    expect(row.last_error).toMatch(/more than 7 days ago/);
    expect(pixel().delivered.some((d) => d.eventId === old.id)).toBe(false);
  });
});

describe('one payment, one Purchase', () => {
  /** The events of one subscription bought through Checkout, plus its next renewal. */
  function subscriptionCheckout() {
    const cus = rid('cus');
    const sub = rid('sub');
    const first = rid('in');
    return {
      sub,
      first,
      checkout: stripeEvent(
        'checkout.session.completed',
        checkoutSession({
          mode: 'subscription',
          customer: cus,
          subscription: sub,
          invoice: first,
          payment_intent: null,
          amount_total: 2000,
        }),
      ),
      created: stripeEvent('customer.subscription.created', subscription({ id: sub, customer: cus }, 2000)),
      firstInvoice: stripeEvent(
        'invoice.paid',
        invoice({
          id: first,
          customer: cus,
          billing_reason: 'subscription_create',
          parent: {
            quote_details: null,
            subscription_details: { metadata: {}, subscription: sub },
            type: 'subscription_details',
          },
        }),
      ),
      renewal: stripeEvent(
        'invoice.paid',
        invoice({
          customer: cus,
          billing_reason: 'subscription_cycle',
          parent: {
            quote_details: null,
            subscription_details: { metadata: {}, subscription: sub },
            type: 'subscription_details',
          },
        }),
      ),
    };
  }

  const purchasesOf = (invoiceId: string) =>
    [...pixel().delivered, ...pixel().duplicates].filter(
      (d) => d.eventName === 'Purchase' && d.eventId === invoiceId,
    );

  it('sends the checkout and its first invoice together as one Purchase, event_id = the invoice id', async () => {
    const s = subscriptionCheckout();
    await env.ingest([s.checkout, s.created, s.firstInvoice]);
    await delivered(s.first);
    await settled(s.checkout.id);
    await settled(s.firstInvoice.id);
    const rows = [await outboxRow(s.checkout.id), await outboxRow(s.firstInvoice.id)];
    expect(rows.map((r) => r!.status).sort()).toEqual([1, 3]);
    expect(rows.find((r) => r!.status === 3)!.failure_reason).toBe('same_payment_sent');
    expect(purchasesOf(s.first)).toHaveLength(1);
    expect(purchasesOf(s.first)[0]!.event.custom_data).toMatchObject({ value: 20, currency: 'USD' });
  });

  it('skips whichever of the two comes second, in either order, and still sends renewals', async () => {
    for (const order of ['invoice-first', 'checkout-first'] as const) {
      const s = subscriptionCheckout();
      const [a, b] = order === 'invoice-first' ? [s.firstInvoice, s.checkout] : [s.checkout, s.firstInvoice];
      await env.ingest([a]);
      await delivered(s.first);
      await env.ingest([b, s.renewal]);
      expect(await settled(b.id)).toMatchObject({ status: 3, failure_reason: 'same_payment_sent' });
      const renewalId = (s.renewal.data.object as { id: string }).id;
      const renewal = await delivered(renewalId);
      expect(renewal.eventName).toBe('Purchase');
      expect(renewal.event.action_source).toBe('system_generated');
      expect(purchasesOf(s.first)).toHaveLength(1);
    }
  });
});

describe('Stripe customer look-ups', () => {
  const attribution = {
    fbc: 'fb.1.1700000000000.FromCustomer',
    fbp: 'fb.1.1700000000000.987654321',
    client_ip: '198.51.100.7',
    client_user_agent: 'Mozilla/5.0 (iPhone)',
  };

  it('fills e-mail and click ids from the customer, once per customer thanks to the cache', async () => {
    const c = customer({ email: 'Subscriber@Example.com', metadata: attribution });
    env.stripe.state.addCustomer(c);
    const first = subscription({ customer: c.id });
    const second = subscription({ customer: c.id });
    await env.ingest([stripeEvent('customer.subscription.created', first)]);
    const d = await delivered(first.id);
    expect(d.event.user_data).toMatchObject({
      em: [sha('subscriber@example.com')],
      external_id: [sha(c.id)],
      fbc: attribution.fbc,
      fbp: attribution.fbp,
      client_ip_address: attribution.client_ip,
      client_user_agent: attribution.client_user_agent,
    });
    await env.ingest([stripeEvent('customer.subscription.created', second)]);
    await delivered(second.id);
    const requests = env.stripe.state.requestsFor(c.id);
    expect(requests).toHaveLength(1);
    expect(requests[0]!.key).toBe('rk_test_forwarder_0123456789');
  });

  it('the object’s own metadata wins over the customer’s', async () => {
    const c = customer({ metadata: attribution });
    env.stripe.state.addCustomer(c);
    const sub = subscription({ customer: c.id, metadata: { fbc: 'fb.1.1700000000000.FromObject' } });
    await env.ingest([stripeEvent('customer.subscription.created', sub)]);
    const d = await delivered(sub.id);
    expect(d.event.user_data.fbc).toBe('fb.1.1700000000000.FromObject');
    expect(d.event.user_data.fbp).toBe(attribution.fbp);
  });

  it('asks the connected account for Connect events (Stripe-Account header)', async () => {
    const account = 'acct_1ConnectTest';
    const c = customer({ email: 'connect@example.com' });
    env.stripe.state.addCustomer(c, account);
    const sub = subscription({ customer: c.id });
    await env.ingest([stripeEvent('customer.subscription.created', sub, { account })]);
    const d = await delivered(sub.id);
    expect(d.event.user_data.em).toEqual([sha('connect@example.com')]);
    expect(env.stripe.state.requestsFor(c.id)[0]!.account).toBe(account);
  });

  it('sends what the event has for deleted and unknown customers', async () => {
    const gone = customer();
    env.stripe.state.addCustomer(gone);
    env.stripe.state.deleteCustomer(gone.id);
    const s1 = subscription({ customer: gone.id });
    const s2 = subscription({ customer: rid('cus') });
    await env.ingest([
      stripeEvent('customer.subscription.created', s1),
      stripeEvent('customer.subscription.created', s2),
    ]);
    const d1 = await delivered(s1.id);
    expect(d1.event.user_data).toEqual({ external_id: [sha(gone.id)] });
    const d2 = await delivered(s2.id);
    expect(Object.keys(d2.event.user_data)).toEqual(['external_id']);
    expect(env.stripe.state.requestsFor(gone.id).map((r) => r.status)).toEqual([200]);
  });

  it('honours 429 Retry-After and then uses the customer', async () => {
    const c = customer({ email: 'ratelimited@example.com' });
    env.stripe.state.addCustomer(c);
    env.stripe.state.rateLimitNext(1, 1);
    const sub = subscription({ customer: c.id });
    await env.ingest([stripeEvent('customer.subscription.created', sub)]);
    const d = await delivered(sub.id);
    expect(d.event.user_data.em).toEqual([sha('ratelimited@example.com')]);
    const requests = env.stripe.state.requestsFor(c.id);
    expect(requests.map((r) => r.status)).toEqual([429, 200]);
  });

  it('defers the event while Stripe keeps rate-limiting beyond the inline wait', async () => {
    const c = customer({ email: 'patient@example.com' });
    env.stripe.state.addCustomer(c);
    // Retry-After 3 s is more than the test's 2 s inline wait: the row is rescheduled, not sent bare.
    env.stripe.state.rateLimitNext(1, 3);
    const sub = subscription({ customer: c.id });
    await env.ingest([stripeEvent('customer.subscription.created', sub)]);
    await waitFor(async () => {
      const { rows } = await env.pool.query<{ last_error: string | null }>(
        `SELECT o.last_error FROM outbox o JOIN events e ON e.id = o.event_id WHERE e.details->>'subscription' = $1`,
        [sub.id],
      );
      return rows[0]?.last_error?.includes('rate-limited') ?? false;
    }, 'deferral');
    const d = await delivered(sub.id);
    expect(d.event.user_data.em).toEqual([sha('patient@example.com')]);
  });

  it('a key Stripe refuses (403) sends what the event has', async () => {
    env.stripe.state.addKey('rk_test_forwarder_0123456789', { customersRead: false });
    try {
      const c = customer({ email: 'hidden@example.com' });
      env.stripe.state.addCustomer(c);
      const sub = subscription({ customer: c.id });
      await env.ingest([stripeEvent('customer.subscription.created', sub)]);
      const d = await delivered(sub.id);
      expect(d.event.user_data.em).toBeUndefined();
      expect(env.stripe.state.requestsFor(c.id).map((r) => r.status)).toEqual([403]);
    } finally {
      env.stripe.state.addKey('rk_test_forwarder_0123456789');
    }
  });
});

describe('status', () => {
  it('reports per-pixel counters without the token', async () => {
    const res = await fetch(`${forwarder.adminUrl}/api/v1/pixels`);
    const body = (await res.json()) as { items: { pixel: string; sent: number; paused: boolean }[] };
    const main = body.items.find((p) => p.pixel === 'growth/website-pixel')!;
    expect(main.sent).toBeGreaterThan(0);
    expect(main.paused).toBe(false);
    expect(JSON.stringify(body)).not.toContain(TOKEN);
    await waitFor(async () => !('pending' in (await outboxStatus(env.pool))), 'an empty outbox');
  });
});
