import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IntegrationStats } from '../../core/store/queries.js';
import { CAL_SECRET, startIngest, STRIPE_SECRET, type IngestUnderTest } from '../ingest/harness.js';
import { runTally } from './tally-cli.js';

describe('`tally trigger` sends signed sample events that ingest accepts', () => {
  let ingest: IngestUnderTest;
  beforeAll(async () => {
    ingest = await startIngest();
  });
  afterAll(() => ingest.close());

  async function trigger(args: string[]) {
    const run = runTally(['trigger', ...args, '--url', ingest.webhookUrl]);
    return { code: await run.exited, output: run.output() };
  }

  it.each([
    'checkout.session.completed',
    'payment_intent.succeeded',
    'charge.succeeded',
    'customer.subscription.created',
    'customer.subscription.updated',
    'customer.subscription.deleted',
    'invoice.paid',
    'invoice.payment_failed',
  ])('stripe %s', async (type) => {
    const { code, output } = await trigger(['stripe', type, '-i', 'growth/acme', '-s', STRIPE_SECRET]);
    expect(output).toMatch(/^200 \{"received":true\} {2}\(evt_\w+\)/);
    expect(code).toBe(0);
  });

  it.each(['BOOKING_CREATED', 'BOOKING_CANCELLED', 'BOOKING_RESCHEDULED'])('cal %s', async (type) => {
    const { code, output } = await trigger(['cal', type, '-i', 'growth/demo-calls', '-s', CAL_SECRET]);
    expect(output.trim()).toBe('200 {"received":true}');
    expect(code).toBe(0);
  });

  it('overrides fields, and the revenue shows in the stats', async () => {
    const { code } = await trigger([
      'stripe',
      'checkout.session.completed',
      '-i',
      'growth/acme',
      '-s',
      STRIPE_SECRET,
      '--set',
      '{"amount_total": 4900, "currency": "eur"}',
    ]);
    expect(code).toBe(0);
    const stats = await ingest.admin<IntegrationStats>('/api/v1/stats?integration=growth/acme');
    expect(stats.body.revenue['24h']).toContainEqual({ currency: 'EUR', amountMinor: 4900, amount: '49.00' });
  });

  it('exits 1 with ingest’s answer when the secret is wrong, and 1 with a hint for an unknown type', async () => {
    const wrong = await trigger(['stripe', 'invoice.paid', '-i', 'growth/acme', '-s', 'whsec_wrong']);
    expect(wrong.code).toBe(1);
    expect(wrong.output).toContain('400 {"error":"invalid_signature"');
    const unknown = await trigger(['stripe', 'refund.created', '-i', 'growth/acme', '-s', STRIPE_SECRET]);
    expect(unknown.code).toBe(1);
    expect(unknown.output).toContain(
      'unknown Stripe type refund.created; one of: checkout.session.completed',
    );
  });
});
