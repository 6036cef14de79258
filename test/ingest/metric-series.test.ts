import yaml from 'js-yaml';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkoutSession, signStripe, stripeEvent } from '../../core/samples/stripe.js';
import { runIngest, type RunningIngest } from '../../ingest/main.js';
import type { baseConfig } from './harness.js';
import { startIngest, STRIPE_SECRET, type IngestUnderTest } from './harness.js';

const metricsOf = async (adminUrl: string) => (await fetch(`${adminUrl}/metrics`)).text();

/** rate() and increase() see a counter's first increment only when the series existed before it, at 0. */
describe('ingest: series exist at 0 before their first event', () => {
  let ingest: IngestUnderTest;
  const others: RunningIngest[] = [];
  beforeAll(async () => {
    ingest = await startIngest();
  });
  afterAll(async () => {
    for (const o of others) await o.close();
    await ingest.close();
  });

  it('creates the counters of every configured integration and type at start', async () => {
    const text = await ingest.metrics();
    for (const line of [
      'tally_ingest_webhooks_received_total{source="stripe",integration="growth/acme"} 0',
      'tally_ingest_webhooks_accepted_total{source="stripe",integration="growth/acme"} 0',
      'tally_ingest_conversions_total{source="stripe",integration="growth/acme",type="checkout_completed"} 0',
      'tally_ingest_conversions_total{source="stripe",integration="growth/acme",type="invoice_paid"} 0',
      'tally_ingest_conversions_total{source="cal",integration="growth/demo-calls",type="booking_created"} 0',
    ]) {
      expect(text).toContain(line);
    }
  });

  it('after a restart, creates the revenue series of the currencies recently paid in, and new integrations’ series on reload', async () => {
    const event = stripeEvent(
      'checkout.session.completed',
      checkoutSession({ currency: 'eur', amount_total: 4900 }),
    );
    const body = JSON.stringify(event);
    expect(
      (
        await ingest.post('/webhooks/stripe/growth/acme', body, {
          'stripe-signature': signStripe(body, STRIPE_SECRET),
        })
      ).status,
    ).toBe(200);
    expect(await ingest.metrics()).toContain(
      'tally_ingest_revenue_minor_units_total{integration="growth/acme",currency="EUR"} 4900',
    );

    // A new replica (a restart, or the rollout a config change causes) on the same database.
    const restarted = await runIngest({
      configPath: ingest.configPath,
      dataDir: '/nonexistent',
      host: '127.0.0.1',
      port: 0,
      adminPort: 0,
    });
    others.push(restarted);
    await expect
      .poll(() => metricsOf(restarted.adminUrl), { timeout: 10_000 })
      .toContain('tally_ingest_revenue_minor_units_total{integration="growth/acme",currency="EUR"} 0');

    const current = yaml.load(await readFile(ingest.configPath, 'utf8')) as ReturnType<typeof baseConfig>;
    await ingest.writeConfig({
      ...current,
      stripe: [...current.stripe, { namespace: 'growth', name: 'beta', signingSecrets: [STRIPE_SECRET] }],
    });
    await expect
      .poll(() => metricsOf(restarted.adminUrl), { timeout: 10_000 })
      .toContain(
        'tally_ingest_conversions_total{source="stripe",integration="growth/beta",type="charge_succeeded"} 0',
      );
  });
});
