import yaml from 'js-yaml';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Conversion } from '../../core/store/queries.js';
import { booking, calEnvelope, signCal } from '../../core/samples/cal.js';
import { checkoutSession, invoice, signStripe, stripeEvent } from '../../core/samples/stripe.js';
import { runCommand } from '../env/run.js';
import type { baseConfig } from './harness.js';
import { CAL_SECRET, sample, startIngest, STRIPE_SECRET, type IngestUnderTest } from './harness.js';

const HOUR = 3600;

describe('ingest: read API, configuration reload and metrics', () => {
  let ingest: IngestUnderTest;
  const now = Math.floor(Date.now() / 1000);
  beforeAll(async () => {
    ingest = await startIngest();
    // Five checkouts an hour apart, newest first in time order of `created`.
    for (let i = 0; i < 5; i++) {
      const body = JSON.stringify(
        stripeEvent('checkout.session.completed', checkoutSession({ amount_total: 1000 + i }), {
          created: now - i * HOUR,
        }),
      );
      await ingest.post('/webhooks/stripe/growth/acme', body, {
        'stripe-signature': signStripe(body, STRIPE_SECRET),
      });
    }
    const old = JSON.stringify(
      stripeEvent('invoice.paid', invoice({ amount_paid: 700 }), { created: now - 3 * 24 * HOUR }),
    );
    await ingest.post('/webhooks/stripe/growth/acme', old, {
      'stripe-signature': signStripe(old, STRIPE_SECRET),
    });
    const cal = JSON.stringify(calEnvelope('BOOKING_CREATED', booking()));
    await ingest.post('/webhooks/cal/growth/demo-calls', cal, {
      'x-cal-signature-256': signCal(cal, CAL_SECRET),
    });
  });
  afterAll(() => ingest.close());

  type Page = { items: Conversion[]; nextCursor: string | null };

  it('lists conversions newest first, paginated with a cursor, filtered by integration, type and time', async () => {
    const first = await ingest.admin<Page>(
      '/api/v1/conversions?integration=growth/acme&type=checkout_completed&limit=2',
    );
    expect(first.status).toBe(200);
    expect(first.body.items.map((c) => c.revenue?.amountMinor)).toEqual([1000, 1001]);
    const second = await ingest.admin<Page>(
      `/api/v1/conversions?integration=growth/acme&type=checkout_completed&limit=2&cursor=${first.body.nextCursor}`,
    );
    expect(second.body.items.map((c) => c.revenue?.amountMinor)).toEqual([1002, 1003]);
    const third = await ingest.admin<Page>(
      `/api/v1/conversions?integration=growth/acme&type=checkout_completed&limit=2&cursor=${second.body.nextCursor}`,
    );
    expect(third.body.items.map((c) => c.revenue?.amountMinor)).toEqual([1004]);
    expect(third.body.nextCursor).toBeNull();

    const since = new Date((now - 2.5 * HOUR) * 1000).toISOString();
    const recent = await ingest.admin<Page>(`/api/v1/conversions?integration=growth/acme&since=${since}`);
    expect(recent.body.items.map((c) => c.revenue?.amountMinor)).toEqual([1000, 1001, 1002]);

    const cal = await ingest.admin<Page>('/api/v1/conversions?integration=growth/demo-calls');
    expect(cal.body.items).toHaveLength(1);
    expect(cal.body.items[0]).toMatchObject({ source: 'cal', type: 'booking_created', revenue: null });
  });

  it('reports counts, the last event and revenue per window', async () => {
    const stats = await ingest.admin<Record<string, unknown>>('/api/v1/stats?integration=growth/acme');
    expect(stats.body).toMatchObject({
      integration: 'growth/acme',
      counts: { checkout_completed: 5, invoice_paid: 1 },
      revenue: {
        '24h': [{ currency: 'USD', amountMinor: 5010, amount: '50.10' }],
        '7d': [{ currency: 'USD', amountMinor: 5710, amount: '57.10' }],
        '30d': [{ currency: 'USD', amountMinor: 5710, amount: '57.10' }],
      },
    });
    expect(typeof stats.body.lastEventTime).toBe('string');
  });

  it('answers a bad query with 400 naming the parameter', async () => {
    expect(await ingest.admin('/api/v1/stats')).toMatchObject({
      status: 400,
      body: { error: 'invalid_query' },
    });
    expect((await ingest.admin<{ message: string }>('/api/v1/conversions?limit=0')).body.message).toContain(
      'limit',
    );
    expect(
      (await ingest.admin<{ message: string }>('/api/v1/conversions?since=yesterday')).body.message,
    ).toContain('since');
    expect((await ingest.admin('/api/v1/conversions?cursor=bm9wZQ')).status).toBe(400);
  });

  it('serves webhooks and the admin API on separate listeners', async () => {
    expect((await fetch(`${ingest.webhookUrl}/api/v1/stats?integration=growth/acme`)).status).toBe(404);
    expect((await fetch(`${ingest.webhookUrl}/metrics`)).status).toBe(404);
    expect((await fetch(`${ingest.adminUrl}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${ingest.adminUrl}/readyz`)).json()).toEqual({ status: 'ready' });
  });

  it('reloads a changed configuration, and keeps the last good one when the new one is invalid', async () => {
    const event = () => JSON.stringify(stripeEvent('invoice.paid', invoice()));
    const newRoute = '/webhooks/stripe/growth/second';
    const body = event();
    expect(
      (await ingest.post(newRoute, body, { 'stripe-signature': signStripe(body, 'whsec_second') })).status,
    ).toBe(404);

    type Loaded = { configDigest: string; stripe: string[]; cal: string[] };
    const before = (await ingest.admin<Loaded>('/api/v1/integrations')).body;
    expect(before).toMatchObject({ stripe: ['growth/acme'], cal: ['growth/demo-calls'] });
    expect(before.configDigest).toMatch(/^[0-9a-f]{64}$/);

    const current = yaml.load(await readFile(ingest.configPath, 'utf8')) as ReturnType<typeof baseConfig>;
    await ingest.writeConfig({
      ...current,
      stripe: [...current.stripe, { namespace: 'growth', name: 'second', signingSecrets: ['whsec_second'] }],
    });
    await expect
      .poll(
        async () => {
          const b = event();
          return (await ingest.post(newRoute, b, { 'stripe-signature': signStripe(b, 'whsec_second') }))
            .status;
        },
        { timeout: 10_000 },
      )
      .toBe(200);
    const after = (await ingest.admin<Loaded>('/api/v1/integrations')).body;
    expect(after.stripe).toEqual(['growth/acme', 'growth/second']);
    expect(after.configDigest).not.toBe(before.configDigest);

    // An invalid file is refused: the integration added above keeps working.
    await ingest.writeConfig({
      ...current,
      stripe: [{ namespace: 'growth', name: 'Bad Name', signingSecrets: ['nope'] }],
    });
    await expect
      .poll(
        async () =>
          sample(await ingest.metrics(), 'tally_ingest_config_reloads_total', { result: 'failure' }),
        {
          timeout: 10_000,
        },
      )
      .toBe(1);
    const b = event();
    expect(
      (await ingest.post(newRoute, b, { 'stripe-signature': signStripe(b, 'whsec_second') })).status,
    ).toBe(200);
    expect((await ingest.admin<Loaded>('/api/v1/integrations')).body).toEqual(after);
  });

  it('exposes metrics that promtool accepts', async () => {
    const metrics = await ingest.metrics();
    expect(
      sample(metrics, 'tally_ingest_conversions_total', {
        integration: 'growth/acme',
        type: 'checkout_completed',
      }),
    ).toBe(5);
    expect(sample(metrics, 'tally_ingest_webhooks_accepted_total', { source: 'cal' })).toBe(1);
    expect(metrics).toContain('tally_ingest_request_duration_seconds_bucket');
    const result = await runCommand('promtool', ['check', 'metrics'], metrics);
    expect(result).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});
