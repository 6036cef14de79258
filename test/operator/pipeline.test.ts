import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../core/config/tally-config.js';
import type { MetaPixel } from '../../operator/resources.js';
import { kubeConfig } from '../env/context.js';
import { runCommand } from '../env/run.js';
import { sample } from '../ingest/harness.js';
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

const TOKEN = 'EAAtestConversionsApiToken0123456789';

describe('MetaPixel and the rendered pipeline (config Secret, Deployments, Service, local processes)', () => {
  let ns: string;
  let opsNs: string;
  let op: TestOperator;
  let r: ReturnType<typeof resources>;
  const apps = kubeConfig().makeApiClient(AppsV1Api);
  const core = kubeConfig().makeApiClient(CoreV1Api);
  const get = (name: string) => r.get<MetaPixel>('metapixels', name);
  const renderedConfig = async () =>
    parseConfig(decode(await r.secret('tally-config', opsNs), 'tally.yaml') ?? '', 'tally-config');
  const pixel = (extra: object = {}) => ({
    displayName: 'Website Pixel',
    pixelId: '123456789012345',
    accessTokenSecretRef: { name: 'meta-token', key: 'access-token' },
    ...extra,
  });

  beforeAll(async () => {
    assertBuilt();
    ({ ns, opsNs } = await operatorNamespaces('pipe'));
    r = resources(ns);
    op = await startOperator(opsNs, ns, {
      image: 'registry.example/tally:test',
      ingestReplicas: 3,
      databaseUrlSecret: { name: 'tally-db', key: 'url' },
      publicBaseURL: 'https://hooks.example.test',
    });
  });
  afterAll(async () => {
    await op?.close();
  });

  it('says which Secret is missing, keeps the pixel out of the configuration, then recovers', async () => {
    await r.apply('metapixels', 'website', pixel({ testEventCode: 'TEST123' }));
    const missing = await eventually('AccessTokenFound False', async () => {
      const p = await get('website');
      return (
        condition(p, 'AccessTokenFound')?.status === 'False' && condition(p, 'Ready')?.status === 'False' && p
      );
    });
    expect(condition(missing, 'AccessTokenFound')).toMatchObject({
      reason: 'SecretNotFound',
      message: expect.stringContaining(`Secret ${ns}/meta-token not found`) as string,
    });
    expect(missing.status?.phase).toBe('Access token missing');
    await eventually(
      'the config rendered',
      async () => (await r.secret('tally-config', opsNs)) !== undefined,
    );
    expect((await renderedConfig()).metaPixels).toEqual([]);

    await r.putSecret('meta-token', { 'access-token': TOKEN });
    const ready = await eventually('Ready', async () => {
      const p = await get('website');
      return condition(p, 'Ready')?.status === 'True' && p;
    });
    expect(ready.status?.phase).toBe('Configured');
    expect(condition(ready, 'ForwarderConfigured')?.status).toBe('True');
    // Nothing reports forwarding results yet, and status does not pretend otherwise.
    expect(condition(ready, 'Forwarding')).toMatchObject({
      status: 'Unknown',
      reason: 'ForwarderNotReporting',
    });
    expect(ready.status?.eventsForwarded).toBeUndefined();
    expect((await renderedConfig()).metaPixels).toEqual([
      {
        namespace: ns,
        name: 'website',
        pixelId: '123456789012345',
        accessToken: TOKEN,
        testEventCode: 'TEST123',
      },
    ]);
    expect(JSON.stringify([ready.status, await r.events('website')])).not.toContain(TOKEN);
  });

  it('names StripeIntegrations that do not exist', async () => {
    await r.apply('metapixels', 'website', pixel({ stripeIntegrations: ['acme', 'ghost'] }));
    const p = await eventually('SourcesFound False', async () => {
      const p = await get('website');
      return condition(p, 'SourcesFound')?.status === 'False' && p?.status?.observedGeneration === 2 && p;
    });
    expect(condition(p, 'SourcesFound')?.message).toContain(
      `StripeIntegration ${ns}/acme, ${ns}/ghost not found`,
    );
    await r.putSecret('stripe-acme', { 'signing-secret': 'whsec_pipeline_0123456789abcdef' });
    for (const name of ['acme', 'ghost']) {
      await r.apply('stripeintegrations', name, {
        displayName: name,
        webhook: { mode: 'External', signingSecretRef: { name: 'stripe-acme', key: 'signing-secret' } },
      });
    }
    await eventually('Ready again', async () => condition(await get('website'), 'Ready')?.status === 'True');
    const config = await eventually('both in the config', async () => {
      const c = await renderedConfig();
      return c.stripe.length === 2 && c;
    });
    expect(config.metaPixels[0]?.stripeIntegrations).toEqual(['acme', 'ghost']);
    expect(config.stripe.map((s) => s.name)).toEqual(['acme', 'ghost']);
  });

  it('runs ingest and forwarder Deployments and the ingest Service from the rendered Secret', async () => {
    const ingest = await eventually('the ingest Deployment', () =>
      apps.readNamespacedDeployment({ name: 'tally-ingest', namespace: opsNs }),
    );
    const forwarder = await apps.readNamespacedDeployment({ name: 'tally-forwarder', namespace: opsNs });
    const service = await core.readNamespacedService({ name: 'tally-ingest', namespace: opsNs });
    expect(ingest.spec?.replicas).toBe(3);
    expect(forwarder.spec?.replicas).toBe(1);
    for (const d of [ingest, forwarder]) {
      const container = d.spec!.template.spec!.containers[0]!;
      expect(container.image).toBe('registry.example/tally:test');
      expect(container.args?.slice(1)).toEqual(['--config', '/etc/tally/tally.yaml']);
      expect(container.env).toEqual([
        { name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'tally-db', key: 'url' } } },
      ]);
      expect(d.spec!.template.spec!.volumes).toMatchObject([
        { name: 'config', secret: { secretName: 'tally-config' } },
      ]);
      expect(d.spec!.template.metadata!.annotations!['tally.dev/config-hash']).toMatch(/^[0-9a-f]{32}$/);
      expect(d.metadata?.managedFields?.map((f) => f.manager)).toEqual(['tally-operator']);
      expect(JSON.stringify(d)).not.toContain(TOKEN);
    }
    expect(service.spec?.ports?.map((p) => [p.name, p.port])).toEqual([
      ['webhooks', 8080],
      ['admin', 9090],
    ]);

    // A changed configuration rolls the pods through the hash annotation.
    const hash = ingest.spec!.template.metadata!.annotations!['tally.dev/config-hash'];
    await r.apply(
      'metapixels',
      'website',
      pixel({ stripeIntegrations: ['acme', 'ghost'], testEventCode: 'TEST999' }),
    );
    await eventually('a new config hash', async () => {
      const d = await apps.readNamespacedDeployment({ name: 'tally-ingest', namespace: opsNs });
      return d.spec!.template.metadata!.annotations!['tally.dev/config-hash'] !== hash;
    });
  });

  it('feeds the same configuration to the local ingest process, with local listeners', async () => {
    const secret = await renderedConfig();
    const file = await eventually('the file to match the Secret', async () => {
      const file = parseConfig(await readFile(path.join(op.dir, 'tally.yaml'), 'utf8'));
      return (
        JSON.stringify({ ...file, ingest: undefined, forwarder: undefined }) ===
          JSON.stringify({ ...secret, ingest: undefined, forwarder: undefined }) && file
      );
    });
    expect(file.ingest).toMatchObject({
      host: '127.0.0.1',
      port: Number(new URL(op.localIngest!.webhookURL).port),
    });
    await eventually('ingest to serve both Stripe integrations', async () => {
      const res = await fetch(`${op.localIngest!.adminURL}/api/v1/integrations`);
      const served = (await res.json()) as { stripe: string[] };
      return JSON.stringify(served.stripe) === JSON.stringify([`${ns}/acme`, `${ns}/ghost`]);
    });
  });

  it('drops a deleted pixel from the configuration', async () => {
    await r.delete('metapixels', 'website');
    await eventually(
      'the pixel gone from the config',
      async () => (await renderedConfig()).metaPixels.length === 0,
    );
  });

  it('serves /healthz, /readyz and metrics that promtool accepts', async () => {
    expect((await fetch(`${op.adminURL}/healthz`)).status).toBe(200);
    expect((await fetch(`${op.adminURL}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${op.adminURL}/metrics`)).text();
    expect(
      sample(metrics, 'tally_operator_reconciles_total', {
        controller: 'metapixel',
        result: 'requeue_after',
      }) + sample(metrics, 'tally_operator_reconciles_total', { controller: 'metapixel', result: 'success' }),
    ).toBeGreaterThan(0);
    expect(metrics).toContain('tally_operator_reconcile_duration_seconds_bucket');
    expect(metrics).toContain('tally_operator_workqueue_depth{controller="pipeline"}');
    expect(sample(metrics, 'tally_operator_leader')).toBe(1);
    expect(metrics).not.toContain(TOKEN);
    const result = await runCommand('promtool', ['check', 'metrics'], metrics);
    expect(result).toEqual({ code: 0, stdout: '', stderr: '' });
  });
});
