import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

const ROUTE = '/webhooks/stripe/growth/acme';

describe('ingest: Stripe webhooks', () => {
  let ingest: IngestUnderTest;
  beforeAll(async () => {
    ingest = await startIngest((base) => ({
      ...base,
      ingest: { bodyLimitBytes: 64 * 1024 },
      stripe: [
        ...base.stripe,
        { namespace: 'growth', name: 'rotating', signingSecrets: ['whsec_old_secret', 'whsec_new_secret'] },
        {
          namespace: 'growth',
          name: 'connect',
          signingSecrets: ['whsec_connect_secret'],
          connectAccountId: 'acct_1Connected',
          conversionTypes: ['checkout_completed'],
        },
      ],
    }));
  });
  afterAll(() => ingest.close());

  async function deliver(event: object, opts: { secret?: string; route?: string; timestamp?: number } = {}) {
    const body = JSON.stringify(event);
    return ingest.post(opts.route ?? ROUTE, body, {
      'stripe-signature': signStripe(body, opts.secret ?? STRIPE_SECRET, opts.timestamp),
    });
  }

  async function countEvents(): Promise<number> {
    const { rows } = await ingest.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events');
    return rows[0]!.n;
  }

  interface StoredRow {
    conversion_type: string | null;
    provider_type: string;
    amount_minor: number | null;
    currency: string | null;
    customer_id: string | null;
    customer_email: string | null;
    account: string | null;
    livemode: boolean | null;
    attribution: Record<string, string>;
    details: Record<string, unknown>;
    outbox: number;
  }

  async function stored(eventId: string): Promise<StoredRow[]> {
    const { rows } = await ingest.pool.query<StoredRow>(
      `SELECT conversion_type, provider_type, amount_minor, currency, customer_id, customer_email, account, livemode,
              attribution, details, (SELECT count(*)::int FROM outbox o WHERE o.event_id = e.id) AS outbox
         FROM events e WHERE provider_event_id = $1`,
      [eventId],
    );
    return rows;
  }

  // Every tracked type, in a two-decimal and a zero-decimal currency.
  const cases: [string, string, (currency: string) => object, number][] = [
    [
      'checkout.session.completed',
      'checkout_completed',
      (c) => checkoutSession({ currency: c, amount_total: 4200 }),
      4200,
    ],
    [
      'payment_intent.succeeded',
      'payment_completed',
      (c) => paymentIntent({ currency: c, amount_received: 4200 }),
      4200,
    ],
    [
      'customer.subscription.created',
      'subscription_created',
      (c) => subscription({ currency: c }, 1400, 3),
      4200,
    ],
    [
      'customer.subscription.updated',
      'subscription_updated',
      (c) => subscription({ currency: c }, 2100, 2),
      4200,
    ],
    ['invoice.paid', 'invoice_paid', (c) => invoice({ currency: c, amount_paid: 4200 }), 4200],
    ['charge.succeeded', 'charge_succeeded', (c) => charge({ currency: c, amount_captured: 4200 }), 4200],
  ];

  it.each(
    cases.flatMap(([type, conversion, build, amount]) =>
      ['usd', 'jpy'].map((currency) => [type, currency, conversion, build, amount] as const),
    ),
  )(
    'stores %s in %s as a conversion with exact revenue',
    async (type, currency, conversion, build, amount) => {
      const event = stripeEvent(type, build(currency));
      const res = await deliver(event);
      expect(res).toEqual({ status: 200, body: { received: true } });
      const [row] = await stored(event.id);
      expect(row).toMatchObject({
        conversion_type: conversion,
        provider_type: type,
        amount_minor: amount,
        currency: currency.toUpperCase(),
        livemode: false,
      });
      const list = await ingest.admin<{ items: { providerEventId: string; revenue: { amount: string } }[] }>(
        `/api/v1/conversions?integration=growth/acme&type=${conversion}&limit=500`,
      );
      const item = list.body.items.find((i) => i.providerEventId === event.id);
      expect(item?.revenue.amount).toBe(currency === 'jpy' ? '4200' : '42.00');
    },
  );

  it('keeps the customer, e-mail and attribution metadata a checkout carries, and queues it for the pixel', async () => {
    const session = checkoutSession({
      customer: 'cus_Attrib1',
      customer_details: { email: 'Buyer@Example.com' },
      metadata: {
        fbc: 'fb.1.1700000000.AbCdEf',
        fbp: 'fb.1.1700000000.123',
        utm_source: 'meta',
        order: '77',
      },
    });
    const event = stripeEvent('checkout.session.completed', session);
    expect((await deliver(event)).status).toBe(200);
    const [row] = await stored(event.id);
    expect(row!.customer_id).toBe('cus_Attrib1');
    expect(row!.customer_email).toBe('Buyer@Example.com');
    expect(row!.attribution).toEqual({
      fbc: 'fb.1.1700000000.AbCdEf',
      fbp: 'fb.1.1700000000.123',
      utm_source: 'meta',
    });
    expect(row!.details).toMatchObject({
      checkoutSession: session.id,
      mode: 'payment',
      paymentStatus: 'paid',
    });
    expect(row!.outbox).toBe(1);
  });

  it('stores invoice.payment_failed and customer.subscription.deleted for the forwarder without counting them', async () => {
    const failed = stripeEvent(
      'invoice.payment_failed',
      invoice({ status: 'open', amount_paid: 0, attempt_count: 2 }),
    );
    const deleted = stripeEvent('customer.subscription.deleted', subscription({ status: 'canceled' }));
    expect((await deliver(failed)).status).toBe(200);
    expect((await deliver(deleted)).status).toBe(200);
    expect(await stored(failed.id)).toMatchObject([
      { conversion_type: null, outbox: 1, details: { attemptCount: 2 } },
    ]);
    expect(await stored(deleted.id)).toMatchObject([{ conversion_type: null, outbox: 1 }]);
  });

  it('answers 200 to a type it does not track, stores nothing and counts it', async () => {
    const event = stripeEvent('customer.created', { id: rid('cus'), object: 'customer' });
    expect(await deliver(event)).toEqual({
      status: 200,
      body: { received: true, ignored: 'untracked_type' },
    });
    expect(await stored(event.id)).toEqual([]);
    expect(
      sample(await ingest.metrics(), 'tally_ingest_webhooks_ignored_total', { reason: 'untracked_type' }),
    ).toBeGreaterThan(0);
  });

  it('answers a duplicate delivery 200 and changes nothing', async () => {
    const event = stripeEvent('invoice.paid', invoice({ amount_paid: 999 }));
    expect((await deliver(event)).body).toEqual({ received: true });
    // A retry carries the same id with a new signature timestamp.
    expect((await deliver(event, { timestamp: Math.floor(Date.now() / 1000) + 1 })).body).toEqual({
      received: true,
      duplicate: true,
    });
    expect(await stored(event.id)).toHaveLength(1);
  });

  it('stores one row for a burst of the same delivery (retries racing), and the rest answer duplicate', async () => {
    const event = stripeEvent('invoice.paid', invoice({ amount_paid: 1234 }));
    // Different signature timestamps, as Stripe's retries have: one group-committed batch may hold several.
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) => deliver(event, { timestamp: Math.floor(Date.now() / 1000) - i })),
    );
    expect(answers.filter((a) => a.status === 200)).toHaveLength(12);
    expect(answers.filter((a) => (a.body as { duplicate?: boolean }).duplicate !== true)).toHaveLength(1);
    expect(await stored(event.id)).toHaveLength(1);
  });

  it('keeps the payload byte for byte as Stripe sent it (pretty-printed, key order kept)', async () => {
    const event = stripeEvent(
      'charge.succeeded',
      charge({ metadata: { zeta: '1', alpha: 'ü "quoted" \\ \u2028' } }),
    );
    const body = JSON.stringify(event, null, 2);
    const res = await ingest.post(ROUTE, body, { 'stripe-signature': signStripe(body, STRIPE_SECRET) });
    expect(res.status).toBe(200);
    const { rows } = await ingest.pool.query<{ payload: string }>(
      'SELECT payload::text AS payload FROM events WHERE provider_event_id = $1',
      [event.id],
    );
    expect(rows[0]?.payload).toBe(body);
  });

  it('accepts either signing secret while one is rolled, and a header that carries both signatures', async () => {
    const route = '/webhooks/stripe/growth/rotating';
    const byOld = stripeEvent('invoice.paid', invoice());
    const byNew = stripeEvent('invoice.paid', invoice());
    expect((await deliver(byOld, { route, secret: 'whsec_old_secret' })).body).toEqual({ received: true });
    expect((await deliver(byNew, { route, secret: 'whsec_new_secret' })).body).toEqual({ received: true });
    // While a secret is rolled in the dashboard, Stripe signs with both: t=…,v1=<old>,v1=<new>.
    const both = stripeEvent('invoice.paid', invoice());
    const body = JSON.stringify(both);
    const t = Math.floor(Date.now() / 1000);
    const v1 = (secret: string) => signStripe(body, secret, t).split(',v1=')[1]!;
    const header = `t=${t},v1=${v1('whsec_retired_secret')},v1=${v1('whsec_new_secret')}`;
    expect((await ingest.post(route, body, { 'stripe-signature': header })).body).toEqual({ received: true });
    expect(await stored(both.id)).toHaveLength(1);
  });

  it('accepts events of its Connect account and ignores other accounts', async () => {
    const route = '/webhooks/stripe/growth/connect';
    const mine = stripeEvent('checkout.session.completed', checkoutSession(), { account: 'acct_1Connected' });
    const other = stripeEvent('checkout.session.completed', checkoutSession(), { account: 'acct_1Other' });
    expect((await deliver(mine, { route, secret: 'whsec_connect_secret' })).body).toEqual({ received: true });
    expect((await deliver(other, { route, secret: 'whsec_connect_secret' })).body).toEqual({
      received: true,
      ignored: 'other_account',
    });
    expect(await stored(mine.id)).toMatchObject([{ account: 'acct_1Connected' }]);
    // The same event id from two accounts is two events: the key is account + id.
    const sameId = stripeEvent('checkout.session.completed', checkoutSession(), {
      id: mine.id,
      account: 'acct_1Connected',
    });
    expect((await deliver(sameId, { route, secret: 'whsec_connect_secret' })).body).toMatchObject({
      duplicate: true,
    });
    // Types outside the integration's conversionTypes are answered 200 and not stored.
    const notTracked = stripeEvent('invoice.paid', invoice(), { account: 'acct_1Connected' });
    expect((await deliver(notTracked, { route, secret: 'whsec_connect_secret' })).body).toEqual({
      received: true,
      ignored: 'type_not_tracked',
    });
  });

  describe('bad input: a clear 4xx, nothing stored, counted by reason', () => {
    const reasons: [
      string,
      () => Promise<{ status: number; body: Record<string, unknown> }>,
      number,
      string,
    ][] = [
      [
        'a tampered body',
        async () => {
          const body = JSON.stringify(stripeEvent('invoice.paid', invoice({ amount_paid: 100 })));
          const header = signStripe(body, STRIPE_SECRET);
          return ingest.post(ROUTE, body.replace('"amount_paid":100', '"amount_paid":100000'), {
            'stripe-signature': header,
          });
        },
        400,
        'invalid_signature',
      ],
      [
        'a signature by another secret',
        () => deliver(stripeEvent('invoice.paid', invoice()), { secret: 'whsec_other' }),
        400,
        'invalid_signature',
      ],
      [
        'a stale timestamp',
        () =>
          deliver(stripeEvent('invoice.paid', invoice()), { timestamp: Math.floor(Date.now() / 1000) - 301 }),
        400,
        'stale_timestamp',
      ],
      [
        'a missing signature',
        () => ingest.post(ROUTE, JSON.stringify(stripeEvent('invoice.paid', invoice())), {}),
        400,
        'missing_signature',
      ],
      [
        'a malformed signature header',
        () => ingest.post(ROUTE, '{}', { 'stripe-signature': 'v1=abc' }),
        400,
        'malformed_signature',
      ],
      [
        'JSON that does not parse after a valid signature',
        () =>
          ingest.post(ROUTE, '{"id": "evt_1", ', {
            'stripe-signature': signStripe('{"id": "evt_1", ', STRIPE_SECRET),
          }),
        400,
        'invalid_json',
      ],
      [
        'a thin (v2) event',
        () =>
          deliver({
            id: 'evt_thin',
            object: 'v2.core.event',
            type: 'v1.billing.meter.error_report_triggered',
          }),
        400,
        'thin_event',
      ],
      [
        'a body over the size limit',
        () => deliver(stripeEvent('invoice.paid', invoice({ metadata: { filler: 'x'.repeat(70 * 1024) } }))),
        413,
        'body_too_large',
      ],
      [
        'the wrong content type',
        async () => {
          const res = await fetch(`${ingest.webhookUrl}${ROUTE}`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: 'a=b',
          });
          return { status: res.status, body: (await res.json()) as Record<string, unknown> };
        },
        415,
        'unsupported_media_type',
      ],
      [
        'an unknown integration',
        () => deliver(stripeEvent('invoice.paid', invoice()), { route: '/webhooks/stripe/growth/nope' }),
        404,
        'unknown_integration',
      ],
    ];

    it.each(reasons)('rejects %s', async (_what, send, status, reason) => {
      const before = sample(await ingest.metrics(), 'tally_ingest_webhooks_rejected_total', {
        source: 'stripe',
        reason,
      });
      const countBefore = await countEvents();
      const res = await send();
      expect(res.status).toBe(status);
      expect(res.body.error).toBe(reason);
      expect(typeof res.body.message).toBe('string');
      expect(JSON.stringify(res.body)).not.toContain(STRIPE_SECRET);
      expect(await countEvents()).toBe(countBefore);
      expect(
        sample(await ingest.metrics(), 'tally_ingest_webhooks_rejected_total', { source: 'stripe', reason }),
      ).toBe(before + 1);
    });
  });
});
