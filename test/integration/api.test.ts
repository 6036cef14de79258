import { ApiextensionsV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../core/project-root.js';
import { createTestNamespace, kubeConfig, kubectl } from '../env/context.js';

const group = 'tally.dev';
const version = 'v1alpha1';

const secretRef = (name: string, key: string) => ({ name, key });

function stripe(ns: string, name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: `${group}/${version}`,
    kind: 'StripeIntegration',
    metadata: { name, namespace: ns },
    spec,
  };
}
function pixel(ns: string, name: string, spec: Record<string, unknown>) {
  return { apiVersion: `${group}/${version}`, kind: 'MetaPixel', metadata: { name, namespace: ns }, spec };
}
function cal(ns: string, name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: `${group}/${version}`,
    kind: 'CalIntegration',
    metadata: { name, namespace: ns },
    spec,
  };
}

const apply = (obj: object) => kubectl(['apply', '--server-side', '-f', '-'], JSON.stringify(obj));

describe('the tally.dev API on a real kube-apiserver', () => {
  let ns: string;
  beforeAll(async () => {
    ns = await createTestNamespace('api');
  });

  it('serves the three CRDs, Established, with short names and the conversions category', async () => {
    const ext = kubeConfig().makeApiClient(ApiextensionsV1Api);
    for (const plural of ['stripeintegrations', 'metapixels', 'calintegrations']) {
      const crd = await ext.readCustomResourceDefinition({ name: `${plural}.${group}` });
      expect(crd.status?.conditions?.find((c) => c.type === 'Established')?.status).toBe('True');
      expect(crd.spec.names.categories).toContain('conversions');
    }
    const resources = await kubectl(['api-resources', `--api-group=${group}`, '-o', 'wide']);
    expect(resources.code).toBe(0);
    expect(resources.stdout).toMatch(
      /stripeintegrations\s+stripe\s+tally\.dev\/v1alpha1\s+true\s+StripeIntegration/,
    );
    expect(resources.stdout).toMatch(/metapixels\s+pixel\s+/);
    expect(resources.stdout).toMatch(/calintegrations\s+cal\s+/);
  });

  it('applies every file in examples/ with kubectl apply --server-side, unchanged', async () => {
    const result = await kubectl(['apply', '--server-side', '-f', path.join(projectRoot(), 'examples')]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    for (const line of [
      'namespace/growth serverside-applied',
      'secret/stripe-acme serverside-applied',
      'stripeintegration.tally.dev/acme serverside-applied',
      'metapixel.tally.dev/website-pixel serverside-applied',
      'calintegration.tally.dev/demo-calls serverside-applied',
    ]) {
      expect(result.stdout).toContain(line);
    }
  });

  it('fills in defaults: Managed webhooks, all six conversion types, both booking events', async () => {
    expect(
      (await apply(stripe(ns, 'defaults', { displayName: 'Defaults', apiKeySecretRef: secretRef('s', 'k') })))
        .code,
    ).toBe(0);
    expect((await apply(cal(ns, 'defaults', { displayName: 'Defaults' }))).code).toBe(0);
    const co = kubeConfig().makeApiClient(CustomObjectsApi);
    const s = (await co.getNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: 'stripeintegrations',
      name: 'defaults',
    })) as { spec: Record<string, unknown> };
    expect(s.spec.webhook).toEqual({ mode: 'Managed' });
    expect(s.spec.conversionTypes).toEqual([
      'checkout_completed',
      'payment_completed',
      'subscription_created',
      'subscription_updated',
      'invoice_paid',
      'charge_succeeded',
    ]);
    const c = (await co.getNamespacedCustomObject({
      group,
      version,
      namespace: ns,
      plural: 'calintegrations',
      name: 'defaults',
    })) as { spec: Record<string, unknown> };
    expect(c.spec.bookingEvents).toEqual(['booking_created', 'booking_cancelled']);
  });

  // Each invalid resource is rejected by the API server itself, with a message that says what to fix.
  const invalid: [string, (ns: string) => object, RegExp][] = [
    [
      'a pixel ID that is too short',
      (ns) =>
        pixel(ns, 'short-id', {
          displayName: 'x',
          pixelId: '12345',
          accessTokenSecretRef: secretRef('m', 't'),
        }),
      /spec\.pixelId: Invalid value: "12345": spec\.pixelId in body should match '\^\[0-9\]\{15,17\}\$'/,
    ],
    [
      'a pixel ID with letters',
      (ns) =>
        pixel(ns, 'letters', {
          displayName: 'x',
          pixelId: '12345678901234a',
          accessTokenSecretRef: secretRef('m', 't'),
        }),
      /spec\.pixelId in body should match/,
    ],
    [
      'a pixel without its access-token Secret reference',
      (ns) => pixel(ns, 'no-token', { displayName: 'x', pixelId: '123456789012345' }),
      /spec\.accessTokenSecretRef: Required value/,
    ],
    [
      'a Secret reference without a key',
      (ns) =>
        pixel(ns, 'no-key', {
          displayName: 'x',
          pixelId: '123456789012345',
          accessTokenSecretRef: { name: 'm' },
        }),
      /spec\.accessTokenSecretRef\.key: Required value/,
    ],
    [
      'External webhooks without a signing-secret reference',
      (ns) => stripe(ns, 'external', { displayName: 'x', webhook: { mode: 'External' } }),
      /signingSecretRef is required when mode is External/,
    ],
    [
      'Managed webhooks without an API key',
      (ns) => stripe(ns, 'managed', { displayName: 'x', webhook: { mode: 'Managed' } }),
      /apiKeySecretRef is required when webhook\.mode is Managed/,
    ],
    [
      'Managed webhooks with a signing secret of their own',
      (ns) =>
        stripe(ns, 'managed-sig', {
          displayName: 'x',
          apiKeySecretRef: secretRef('s', 'k'),
          webhook: { mode: 'Managed', signingSecretRef: secretRef('s', 'w') },
        }),
      /signingSecretRef must not be set when mode is Managed/,
    ],
    [
      'an unknown webhook mode',
      (ns) =>
        stripe(ns, 'mode', {
          displayName: 'x',
          apiKeySecretRef: secretRef('s', 'k'),
          webhook: { mode: 'Automatic' },
        }),
      /spec\.webhook\.mode: Unsupported value: "Automatic": supported values: "Managed", "External"/,
    ],
    [
      'an unknown conversion type',
      (ns) =>
        stripe(ns, 'types', {
          displayName: 'x',
          apiKeySecretRef: secretRef('s', 'k'),
          conversionTypes: ['refund_issued'],
        }),
      /spec\.conversionTypes\[0\]: Unsupported value: "refund_issued"/,
    ],
    [
      'a conversion type listed twice',
      (ns) =>
        stripe(ns, 'dupes', {
          displayName: 'x',
          apiKeySecretRef: secretRef('s', 'k'),
          conversionTypes: ['invoice_paid', 'invoice_paid'],
        }),
      /\.spec\.conversionTypes: duplicate entries for key \[="invoice_paid"\]/,
    ],
    [
      'a Connect account that is not an acct_ ID',
      (ns) =>
        stripe(ns, 'connect', {
          displayName: 'x',
          apiKeySecretRef: secretRef('s', 'k'),
          connectAccountId: 'ca_123',
        }),
      /spec\.connectAccountId in body should match/,
    ],
    [
      'an unknown booking event',
      (ns) => cal(ns, 'events', { displayName: 'x', bookingEvents: ['booking_rescheduled'] }),
      /spec\.bookingEvents\[0\]: Unsupported value: "booking_rescheduled"/,
    ],
    ['a missing display name', (ns) => cal(ns, 'nameless', {}), /spec\.displayName: Required value/],
    [
      'a resource without a spec',
      (ns) => ({
        apiVersion: `${group}/${version}`,
        kind: 'CalIntegration',
        metadata: { name: 'specless', namespace: ns },
      }),
      /spec: Required value/,
    ],
  ];

  it.each(invalid)('rejects %s', async (_what, build, message) => {
    const result = await apply(build(ns));
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
    const name = (build(ns) as { metadata: { name: string } }).metadata.name;
    const kind = (build(ns) as { kind: string }).kind.toLowerCase();
    expect((await kubectl(['get', `${kind}.${group}`, name, '-n', ns])).code).not.toBe(0);
  });

  it('lists all three kinds with `kubectl get conversions`, with the printer columns people read', async () => {
    const ns2 = await createTestNamespace('columns');
    expect(
      (await apply(stripe(ns2, 'acme', { displayName: 'Acme', apiKeySecretRef: secretRef('s', 'k') }))).code,
    ).toBe(0);
    expect(
      (
        await apply(
          pixel(ns2, 'web', {
            displayName: 'Web',
            pixelId: '123456789012345',
            accessTokenSecretRef: secretRef('m', 't'),
          }),
        )
      ).code,
    ).toBe(0);
    expect((await apply(cal(ns2, 'calls', { displayName: 'Calls' }))).code).toBe(0);

    // Status as the operator will write it: through the status subresource.
    const co = kubeConfig().makeApiClient(CustomObjectsApi);
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const status = {
      observedGeneration: 1,
      phase: 'Receiving payment events',
      lastEventTime: now,
      recentRevenue: {
        window: '24h',
        totals: [
          { currency: 'USD', minorUnits: 123456, display: '1234.56 USD' },
          { currency: 'JPY', minorUnits: 9800, display: '9800 JPY' },
        ],
        summary: '1234.56 USD, 9800 JPY',
        updateTime: now,
      },
      eventCounts: { checkout_completed: 3 },
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Receiving',
          message: 'Events arrive',
          lastTransitionTime: now,
          observedGeneration: 1,
        },
      ],
    };
    const { setHeaderOptions, PatchStrategy } = await import('@kubernetes/client-node');
    await co.patchNamespacedCustomObjectStatus(
      { group, version, namespace: ns2, plural: 'stripeintegrations', name: 'acme', body: { status } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );

    const all = await kubectl(['get', 'conversions', '-n', ns2]);
    expect(all.code).toBe(0);
    expect(all.stdout).toContain('stripeintegration.tally.dev/acme');
    expect(all.stdout).toContain('metapixel.tally.dev/web');
    expect(all.stdout).toContain('calintegration.tally.dev/calls');

    const table = await kubectl(['get', 'stripeintegrations', '-n', ns2]);
    const [header, row] = table.stdout.trim().split('\n');
    expect(header?.split(/\s{2,}/)).toEqual(['NAME', 'READY', 'PHASE', 'REVENUE', 'LAST EVENT', 'AGE']);
    expect(row).toMatch(/^acme\s+True\s+Receiving payment events\s+1234\.56 USD, 9800 JPY\s+\d+s\s+\d+s$/);

    const pixels = await kubectl(['get', 'pixel', '-n', ns2]);
    expect(pixels.stdout.split('\n')[0]?.split(/\s{2,}/)).toEqual([
      'NAME',
      'PIXEL',
      'READY',
      'PHASE',
      'FORWARDED',
      'FAILED',
      'AGE',
    ]);
    expect(pixels.stdout).toMatch(/web\s+123456789012345/);
  });

  it('keeps spec and status apart: the status subresource ignores spec, spec writes bump the generation', async () => {
    const ns3 = await createTestNamespace('subresource');
    expect((await apply(cal(ns3, 'calls', { displayName: 'Calls' }))).code).toBe(0);
    const co = kubeConfig().makeApiClient(CustomObjectsApi);
    const { setHeaderOptions, PatchStrategy } = await import('@kubernetes/client-node');
    const ref = { group, version, namespace: ns3, plural: 'calintegrations', name: 'calls' };
    await co.patchNamespacedCustomObjectStatus(
      {
        ...ref,
        body: {
          spec: { displayName: 'Changed through status' },
          status: { phase: 'Waiting for first booking' },
        },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    let obj = (await co.getNamespacedCustomObject(ref)) as {
      metadata: { generation: number };
      spec: { displayName: string };
      status: { phase: string };
    };
    expect(obj.spec.displayName).toBe('Calls');
    expect(obj.status.phase).toBe('Waiting for first booking');
    expect(obj.metadata.generation).toBe(1);

    expect((await apply(cal(ns3, 'calls', { displayName: 'Renamed' }))).code).toBe(0);
    obj = (await co.getNamespacedCustomObject(ref)) as typeof obj;
    expect(obj.metadata.generation).toBe(2);
    expect(obj.status.phase).toBe('Waiting for first booking');
  });

  it('teaches the API through kubectl explain', async () => {
    const spec = await kubectl(['explain', 'metapixel.spec']);
    expect(spec.code).toBe(0);
    expect(spec.stdout).toContain('15 to 17 digits');
    expect(spec.stdout).toMatch(/accessTokenSecretRef\s+<Object> -required-/);

    const webhook = await kubectl(['explain', 'stripeintegration.spec.webhook.mode']);
    expect(webhook.stdout).toContain('Managed: Tally registers the webhook endpoint');
    expect(webhook.stdout).toMatch(/ENUM:\s+Managed\s+External/);

    const conditions = await kubectl(['explain', 'calintegration.status.conditions.reason']);
    expect(conditions.stdout).toContain('CamelCase');
  });
});
