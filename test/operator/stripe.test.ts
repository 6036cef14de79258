import { sampleSum } from '../env/metrics.js';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StripeIntegration } from '../../operator/resources.js';
import { FakeStripeApi } from '../fakes/stripe-api/server.js';
import { checkoutSession, signStripe, stripeEvent } from '../../core/samples/stripe.js';
import {
  assertBuilt,
  condition,
  decode,
  eventually,
  operatorNamespaces,
  resources,
  startOperator,
  type TestOperator,
} from './support.js';

const GOOD_KEY = 'rk_test_51TallyGoodKey000000000000';
const READ_ONLY_KEY = 'rk_test_51TallyReadOnly00000000000';
const UNKNOWN_KEY = 'rk_test_51TallyUnknownKey000000000';

describe('StripeIntegration against a fake Stripe API and a real ingest', () => {
  let ns: string;
  let opsNs: string;
  let op: TestOperator;
  let stripe: FakeStripeApi;
  let r: ReturnType<typeof resources>;
  const get = (name: string) => r.get<StripeIntegration>('stripeintegrations', name);
  const managed = (key = 'restricted-key', secret = 'stripe-acme', extra: object = {}) => ({
    displayName: 'Acme checkout',
    apiKeySecretRef: { name: secret, key },
    conversionTypes: ['checkout_completed', 'invoice_paid'],
    ...extra,
  });
  const readyOf = (name: string) =>
    eventually(`${name} Ready`, async () => {
      const s = await get(name);
      return condition(s, 'Ready')?.status === 'True' && s;
    });
  const reasonOf = (name: string, reason: string) =>
    eventually(`${name} Ready=False ${reason}`, async () => {
      const s = await get(name);
      return condition(s, 'Ready')?.reason === reason && s;
    });

  beforeAll(async () => {
    assertBuilt();
    stripe = await new FakeStripeApi().start();
    stripe.addKey(GOOD_KEY, 'acct_1Tally', 'write').addKey(READ_ONLY_KEY, 'acct_1Tally', 'read');
    ({ ns, opsNs } = await operatorNamespaces('stripe'));
    r = resources(ns);
    await r.putSecret('stripe-acme', { 'restricted-key': GOOD_KEY });
    op = await startOperator(opsNs, ns, { stripeApiBase: stripe.url });
  });
  afterAll(async () => {
    await op?.close();
    await stripe?.stop();
  });

  it('registers one endpoint for the tracked events, pinned to the SDK API version, and stores its secret', async () => {
    await r.apply('stripeintegrations', 'acme', managed());
    const s = await readyOf('acme');
    const [endpoint, ...others] = stripe.endpoints();
    expect(others).toHaveLength(0);
    expect(endpoint).toMatchObject({
      url: `${op.localIngest!.webhookURL}/webhooks/stripe/${ns}/acme`,
      api_version: Stripe.API_VERSION,
      connect: false,
      status: 'enabled',
    });
    expect(endpoint!.metadata).toMatchObject({
      tally_resource_uid: s.metadata.uid,
      tally_resource: `${ns}/acme`,
    });
    expect([...endpoint!.enabled_events].sort()).toEqual([
      'checkout.session.completed',
      'customer.subscription.deleted',
      'invoice.paid',
      'invoice.payment_failed',
    ]);
    expect(s.status).toMatchObject({
      phase: 'Waiting for first event',
      endpointId: endpoint!.id,
      webhookURL: endpoint!.url,
      signingSecretRef: { name: 'acme-stripe-webhook', key: 'signingSecret' },
      observedGeneration: s.metadata.generation,
    });
    expect(s.metadata.finalizers).toEqual(['tally.dev/cleanup']);
    const secret = await r.secret('acme-stripe-webhook');
    expect(decode(secret, 'signingSecret')).toBe(endpoint!.secret);
    expect(secret?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'StripeIntegration',
      uid: s.metadata.uid,
      controller: true,
    });
    const events = await r.events('acme');
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['WebhookRegistered', 'Ready']));
    expect(JSON.stringify([s.status, events])).not.toContain(endpoint!.secret);
  });

  it('shows "Receiving payment events" and revenue once signed events pass through ingest', async () => {
    const secret = decode(await r.secret('acme-stripe-webhook'), 'signingSecret')!;
    const payload = JSON.stringify(
      stripeEvent('checkout.session.completed', checkoutSession({ amount_total: 123456, currency: 'usd' })),
    );
    const res = await fetch(`${op.localIngest!.webhookURL}/webhooks/stripe/${ns}/acme`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'stripe-signature': signStripe(payload, secret) },
      body: payload,
    });
    expect(res.status).toBe(200);
    const s = await eventually('Receiving payment events', async () => {
      const s = await get('acme');
      return s?.status?.phase === 'Receiving payment events' && s.status.recentRevenue && s;
    });
    expect(s.status?.recentRevenue).toMatchObject({
      window: '30d',
      totals: [{ currency: 'USD', minorUnits: 123456, display: '1234.56 USD' }],
      summary: '1234.56 USD',
    });
    expect(s.status?.eventCounts).toEqual({ checkout_completed: 1 });
    expect(s.status?.lastEventTime).toMatch(/^\d{4}-/);
  });

  it('finds its endpoint again after a restart instead of creating a duplicate, and updates it in place', async () => {
    const before = stripe.endpoints()[0]!;
    const creates = () =>
      stripe.requests.filter((q) => q.method === 'POST' && q.path === '/v1/webhook_endpoints').length;
    const created = creates();
    await op.close();
    op = await startOperator(opsNs, ns, {
      stripeApiBase: stripe.url,
      localDir: op.dir,
      localIngestPort: Number(new URL(op.localIngest!.webhookURL).port),
    });
    await r.apply(
      'stripeintegrations',
      'acme',
      managed('restricted-key', 'stripe-acme', { conversionTypes: ['checkout_completed'] }),
    );
    const s = await eventually('generation 2 observed', async () => {
      const s = await get('acme');
      return s?.status?.observedGeneration === 2 && condition(s, 'Ready')?.status === 'True' && s;
    });
    expect(creates()).toBe(created);
    expect(stripe.endpoints().map((e) => e.id)).toEqual([before.id]);
    expect(stripe.endpoints()[0]!.enabled_events.sort()).toEqual([
      'checkout.session.completed',
      'customer.subscription.deleted',
      'invoice.payment_failed',
    ]);
    expect(s.status?.endpointId).toBe(before.id);
    expect(decode(await r.secret('acme-stripe-webhook'), 'signingSecret')).toBe(before.secret);
  });

  it('recreates the endpoint when connect changes (Stripe cannot update it) and swaps the stored secret', async () => {
    const before = stripe.endpoints()[0]!;
    await r.apply(
      'stripeintegrations',
      'acme',
      managed('restricted-key', 'stripe-acme', { connectAccountId: 'acct_1Connected' }),
    );
    const s = await eventually('a new endpoint', async () => {
      const s = await get('acme');
      return s?.status?.endpointId !== before.id && condition(s, 'Ready')?.status === 'True' && s;
    });
    const [now, ...rest] = stripe.endpoints();
    expect(rest).toHaveLength(0);
    expect(now).toMatchObject({ id: s.status?.endpointId, connect: true });
    expect(decode(await r.secret('acme-stripe-webhook'), 'signingSecret')).toBe(now!.secret);
  });

  it('names the missing Secret, then recovers when it is created', async () => {
    await r.apply('stripeintegrations', 'later', managed('key', 'stripe-later'));
    const s = await reasonOf('later', 'SecretNotFound');
    expect(condition(s, 'Ready')?.status).toBe('False');
    expect(condition(s, 'WebhookRegistered')?.message).toContain(`Secret ${ns}/stripe-later not found`);
    expect(s.status?.phase).toBe('Error');
    expect((await r.events('later')).map((e) => e.reason)).toContain('SecretNotFound');
    await r.putSecret('stripe-later', { key: GOOD_KEY });
    const ok = await readyOf('later');
    expect(ok.status?.endpointId).toMatch(/^we_/);
  });

  it('reports a rejected key (401) and a key without permission (403) without echoing the key', async () => {
    await r.putSecret('stripe-bad', { unknown: UNKNOWN_KEY, readonly: READ_ONLY_KEY });
    await r.apply('stripeintegrations', 'unknown-key', managed('unknown', 'stripe-bad'));
    await r.apply('stripeintegrations', 'read-only', managed('readonly', 'stripe-bad'));
    const a = await reasonOf('unknown-key', 'StripeAuthenticationFailed');
    const b = await reasonOf('read-only', 'StripePermissionDenied');
    expect(condition(a, 'Ready')?.message).toContain(`Secret ${ns}/stripe-bad key unknown`);
    expect(condition(b, 'Ready')?.message).toContain('write access to Webhook Endpoints');
    const text = JSON.stringify([
      a.status,
      b.status,
      await r.events('unknown-key'),
      await r.events('read-only'),
    ]);
    expect(text).not.toContain(UNKNOWN_KEY);
    expect(text).not.toContain(READ_ONLY_KEY);
    // Backoff, not a hot loop: a handful of attempts in a few seconds, and one Warning Event per transition.
    const attempts = () => stripe.requests.filter((q) => q.status === 401).length;
    const first = attempts();
    await new Promise((res) => setTimeout(res, 3_000));
    expect(attempts() - first).toBeLessThanOrEqual(4);
    expect(
      (await r.events('unknown-key')).filter((e) => e.reason === 'StripeAuthenticationFailed'),
    ).toHaveLength(1);
    // Never registered, so nothing blocks their deletion.
    await r.delete('stripeintegrations', 'unknown-key');
    await r.delete('stripeintegrations', 'read-only');
    await eventually('both gone', async () => !(await get('unknown-key')) && !(await get('read-only')));
  });

  it('backs off on 429 and recovers; names the 16-endpoint limit of an account', async () => {
    stripe.failNext(429, 3);
    await r.apply('stripeintegrations', 'throttled', managed());
    await readyOf('throttled');
    // The throttled state is short-lived; its Warning Event and the fake's answers show it happened.
    expect((await r.events('throttled')).map((e) => e.reason)).toContain('StripeRateLimited');
    expect(stripe.requests.filter((q) => q.status === 429)).toHaveLength(3);

    const FULL_KEY = 'rk_test_51TallyFullAccount0000000';
    stripe.addKey(FULL_KEY, 'acct_1Full', 'write');
    for (let i = 0; i < 16; i++) stripe.seedEndpoint('acct_1Full', `https://example.com/hook/${i}`);
    await r.putSecret('stripe-full', { key: FULL_KEY });
    await r.apply('stripeintegrations', 'full', managed('key', 'stripe-full'));
    const s = await reasonOf('full', 'EndpointLimitReached');
    expect(condition(s, 'Ready')?.message).toContain('16 webhook endpoints');
    expect(stripe.endpoints('acct_1Full')).toHaveLength(16);
    await r.delete('stripeintegrations', 'full');
    await r.delete('stripeintegrations', 'throttled');
    await eventually('both gone', async () => !(await get('full')) && !(await get('throttled')));
  });

  it('uses an External endpoint secret by reference', async () => {
    await r.putSecret('stripe-external', { 'signing-secret': 'whsec_external_0123456789abcdef' });
    await r.apply('stripeintegrations', 'external', {
      displayName: 'External',
      webhook: { mode: 'External', signingSecretRef: { name: 'stripe-external', key: 'signing-secret' } },
    });
    const s = await readyOf('external');
    expect(s.status?.signingSecretRef).toEqual({ name: 'stripe-external', key: 'signing-secret' });
    expect(s.metadata.finalizers ?? []).toEqual([]);
    expect(condition(s, 'WebhookRegistered')?.reason).toBe('ExternalEndpoint');
  });

  it('deletes its endpoint and finalizer when switched from Managed to External', async () => {
    await r.apply('stripeintegrations', 'switcher', managed());
    const endpointId = (await readyOf('switcher')).status!.endpointId!;
    await r.apply('stripeintegrations', 'switcher', {
      ...managed(),
      webhook: { mode: 'External', signingSecretRef: { name: 'stripe-external', key: 'signing-secret' } },
    });
    // Ready again only once ingest has loaded the External secret: until then it truthfully says IngestNotLoaded.
    await eventually('External and Ready', async () => {
      const s = await get('switcher');
      if (condition(s, 'Ready')?.status !== 'True') return false;
      return (
        condition(s, 'WebhookRegistered')?.reason === 'ExternalEndpoint' &&
        (s?.metadata.finalizers ?? []).length === 0 &&
        s
      );
    });
    expect(stripe.endpoints().map((e) => e.id)).not.toContain(endpointId);
    await r.delete('stripeintegrations', 'switcher');
    await eventually('switcher gone', async () => !(await get('switcher')));
  });

  it('makes no writes in the steady state: Kubernetes, Events or Stripe', async () => {
    await readyOf('acme');
    await readyOf('later');
    const writes = async () =>
      sampleSum(await (await fetch(`${op.adminURL}/metrics`)).text(), 'tally_operator_api_writes_total');
    // Let the status refreshes that follow the last changes settle.
    let k8s = await writes();
    await eventually('writes to settle', async () => {
      await new Promise((res) => setTimeout(res, 2_000));
      const now = await writes();
      const settled = now === k8s;
      k8s = now;
      return settled;
    });
    const stripeWrites = stripe.writes;
    const versions = async () =>
      JSON.stringify(
        await Promise.all(
          ['acme', 'later', 'external'].map(async (n) => (await get(n))?.metadata.resourceVersion),
        ),
      );
    const rv = await versions();
    const eventCount = (await r.events('acme')).length;
    await new Promise((res) => setTimeout(res, 5_000)); // five stats refreshes of every resource
    expect(await writes()).toBe(k8s);
    expect(stripe.writes).toBe(stripeWrites);
    expect(await versions()).toBe(rv);
    expect((await r.events('acme')).length).toBe(eventCount);
  });

  it('shows an unreachable Stripe API in status and recovers when it is back', async () => {
    await stripe.stop();
    await r.apply('stripeintegrations', 'offline', managed());
    const s = await reasonOf('offline', 'StripeUnreachable');
    expect(condition(s, 'Ready')?.message).toContain('Could not reach the Stripe API');
    await stripe.restart();
    await readyOf('offline');
  });

  it('keeps the finalizer while cleanup is blocked, shows it, then deletes the endpoint', async () => {
    const endpointId = (await get('later'))!.status!.endpointId!;
    await r.deleteSecret('stripe-later');
    await r.delete('stripeintegrations', 'later');
    const stuck = await reasonOf('later', 'CleanupBlocked');
    expect(stuck.metadata.deletionTimestamp).toBeDefined();
    expect(condition(stuck, 'Ready')?.message).toContain(`Secret ${ns}/stripe-later not found`);
    expect(stripe.endpoints().map((e) => e.id)).toContain(endpointId);
    await r.putSecret('stripe-later', { key: GOOD_KEY });
    await eventually('the resource gone', async () => (await get('later')) === undefined);
    expect(stripe.endpoints().map((e) => e.id)).not.toContain(endpointId);
  });

  it('deletes its endpoint when the resource is deleted', async () => {
    const endpointId = (await get('acme'))!.status!.endpointId!;
    await r.delete('stripeintegrations', 'acme');
    await eventually('acme gone', async () => (await get('acme')) === undefined);
    expect(stripe.endpoints().map((e) => e.id)).not.toContain(endpointId);
    expect(
      stripe.requests.some((q) => q.method === 'DELETE' && q.path === `/v1/webhook_endpoints/${endpointId}`),
    ).toBe(true);
  });
});
