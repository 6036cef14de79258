import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GROUP, VERSION } from '../../core/api/v1alpha1/common.js';
import type { IntegrationStats } from '../../core/store/queries.js';
import { createTestNamespace, kubeConfig } from '../env/context.js';
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

describe('`tally trigger` without --secret reads the secret and webhook URL from the cluster', () => {
  let ingest: IngestUnderTest;
  let ns: string;
  const custom = () => kubeConfig().makeApiClient(CustomObjectsApi);
  const core = () => kubeConfig().makeApiClient(CoreV1Api);
  const env = { ...process.env, KUBECONFIG: inject('kubeconfigPath') };

  async function trigger(args: string[]) {
    const run = runTally(['trigger', ...args], env);
    return { code: await run.exited, output: run.output() };
  }

  /** Writes status the way the operator does: through the status subresource. */
  async function setStatus(plural: string, name: string, status: object) {
    await custom().patchNamespacedCustomObjectStatus(
      { group: GROUP, version: VERSION, namespace: ns, plural, name, body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  beforeAll(async () => {
    ingest = await startIngest();
    ns = await createTestNamespace('trigger');
    await core().createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: 'stripe-acme' },
        stringData: { 'signing-secret': STRIPE_SECRET },
      },
    });
    await core().createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'demo-calls-webhook' }, stringData: { secret: CAL_SECRET } },
    });
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: 'stripeintegrations',
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'StripeIntegration',
        metadata: { name: 'acme' },
        spec: {
          displayName: 'Acme',
          webhook: { mode: 'External', signingSecretRef: { name: 'stripe-acme', key: 'signing-secret' } },
        },
      },
    });
    await custom().createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: 'calintegrations',
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'CalIntegration',
        metadata: { name: 'demo-calls' },
        spec: { displayName: 'Demo calls' },
      },
    });
  });
  afterAll(() => ingest.close());

  it('falls back to spec.webhook.signingSecretRef and posts to status.webhookURL', async () => {
    await setStatus('stripeintegrations', 'acme', {
      webhookURL: `${ingest.webhookUrl}/webhooks/stripe/growth/acme`,
    });
    const { code, output } = await trigger(['stripe', 'checkout.session.completed', '-i', `${ns}/acme`]);
    expect(output).toMatch(/^200 \{"received":true\} {2}\(evt_\w+\)/);
    expect(code).toBe(0);
  });

  it('prefers the secret status.signingSecretRef names (the one ingest verifies with), and --url over status', async () => {
    // Spec now points at a stale secret; status points at the one in use.
    await core().replaceNamespacedSecret({
      name: 'stripe-acme',
      namespace: ns,
      body: { metadata: { name: 'stripe-acme' }, stringData: { 'signing-secret': 'whsec_stale' } },
    });
    await core().createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'acme-in-use' }, stringData: { 'signing-secret': STRIPE_SECRET } },
    });
    await setStatus('stripeintegrations', 'acme', {
      signingSecretRef: { name: 'acme-in-use', key: 'signing-secret' },
    });
    const ok = await trigger(['stripe', 'invoice.paid', '-i', `${ns}/acme`]);
    expect(ok.output).toMatch(/^200 \{"received":true\}/);
    expect(ok.code).toBe(0);
    // An explicit --url wins over status.webhookURL; this namespace is not configured in that ingest.
    const routed = await trigger(['stripe', 'invoice.paid', '-i', `${ns}/acme`, '-u', ingest.webhookUrl]);
    expect(routed.output).toMatch(/^404 \{"error":"unknown_integration"/);
    expect(routed.code).toBe(1);
  });

  it('reads the Cal.com secret the operator generated (status.webhookSecretRef)', async () => {
    const before = await trigger(['cal', 'BOOKING_CREATED', '-i', `${ns}/demo-calls`]);
    expect(before.code).toBe(1);
    expect(before.output).toContain(
      `CalIntegration ${ns}/demo-calls has no webhook secret yet (status.webhookSecretRef is empty)`,
    );
    await setStatus('calintegrations', 'demo-calls', {
      webhookURL: `${ingest.webhookUrl}/webhooks/cal/growth/demo-calls`,
      webhookSecretRef: { name: 'demo-calls-webhook', key: 'secret' },
    });
    const after = await trigger(['cal', 'BOOKING_CREATED', '-i', `${ns}/demo-calls`]);
    expect(after.output.trim()).toBe('200 {"received":true}');
    expect(after.code).toBe(0);
  });

  it('names the missing object or key, and never prints a secret', async () => {
    const missing = await trigger(['stripe', 'invoice.paid', '-i', `${ns}/nope`]);
    expect(missing.code).toBe(1);
    expect(missing.output).toContain(`StripeIntegration ${ns}/nope not found`);

    await setStatus('stripeintegrations', 'acme', {
      signingSecretRef: { name: 'acme-in-use', key: 'wrong-key' },
    });
    const noKey = await trigger(['stripe', 'invoice.paid', '-i', `${ns}/acme`]);
    expect(noKey.code).toBe(1);
    expect(noKey.output).toContain(`Secret ${ns}/acme-in-use has no key "wrong-key"`);

    await setStatus('stripeintegrations', 'acme', {
      signingSecretRef: { name: 'gone', key: 'signing-secret' },
    });
    const noSecret = await trigger(['stripe', 'invoice.paid', '-i', `${ns}/acme`]);
    expect(noSecret.code).toBe(1);
    expect(noSecret.output).toContain(`Secret ${ns}/gone, referenced by StripeIntegration acme, not found`);
    for (const out of [missing.output, noKey.output, noSecret.output]) {
      expect(out).not.toContain(STRIPE_SECRET);
      expect(out).not.toContain('whsec_stale');
    }
  });
});
