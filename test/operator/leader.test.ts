import { sampleSum } from '../env/metrics.js';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CalIntegration } from '../../operator/resources.js';
import { createTestSchema, kubeConfig } from '../env/context.js';
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

describe('two operator replicas: one leader on a Lease', () => {
  let ns: string;
  let opsNs: string;
  let a: TestOperator;
  let b: TestOperator;
  let r: ReturnType<typeof resources>;
  const get = (name: string) => r.get<CalIntegration>('calintegrations', name);
  const metricsOf = async (op: TestOperator) => (await fetch(`${op.adminURL}/metrics`)).text();
  const writesOf = async (op: TestOperator) =>
    sampleSum(await metricsOf(op), 'tally_operator_api_writes_total');

  beforeAll(async () => {
    assertBuilt();
    ({ ns, opsNs } = await operatorNamespaces('leader'));
    r = resources(ns);
    const { url } = await createTestSchema('leader');
    const common = { databaseUrl: url, publicBaseURL: 'https://hooks.example.test' };
    a = await startOperator(opsNs, ns, { ...common, identity: 'replica-a' });
    await eventually('replica a to lead', () => Promise.resolve(a.isLeader()));
    b = await startOperator(opsNs, ns, { ...common, identity: 'replica-b' });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  it('reconciles only on the leader; the standby keeps a warm cache and writes nothing', async () => {
    await r.apply('calintegrations', 'first', { displayName: 'First' });
    await eventually('first Ready', async () => condition(await get('first'), 'Ready')?.status === 'True');
    expect(a.isLeader()).toBe(true);
    expect(b.isLeader()).toBe(false);
    const lease = await kubeConfig()
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: 'tally-operator', namespace: opsNs });
    expect(lease.spec?.holderIdentity).toBe('replica-a');
    expect(await writesOf(b)).toBe(0);
    const standby = await metricsOf(b);
    expect(standby).not.toContain('tally_operator_reconciles_total{');
    expect(sample(standby, 'tally_operator_leader')).toBe(0);
    expect(
      b.localIngest && (await fetch(`${b.localIngest.adminURL}/healthz`).catch(() => undefined)),
    ).toBeUndefined();
  });

  it('hands over when the leader stops: the other replica takes the Lease and carries on', async () => {
    const secret = decode(await r.secret('first-cal-webhook'), 'webhookSecret');
    await a.close();
    await eventually('replica b to lead', () => Promise.resolve(b.isLeader()), 20_000);
    await r.apply('calintegrations', 'second', { displayName: 'Second' });
    await eventually('second Ready', async () => condition(await get('second'), 'Ready')?.status === 'True');
    // The first integration is served by b's pipeline now, with the same secret.
    const served = await eventually('b serves first', async () => {
      const res = await fetch(`${b.localIngest!.adminURL}/api/v1/integrations`).catch(() => undefined);
      const body = res?.ok ? ((await res.json()) as { cal: string[] }) : undefined;
      return body?.cal.includes(`${ns}/first`) && body;
    });
    expect(served.cal).toEqual([`${ns}/first`, `${ns}/second`]);
    expect(decode(await r.secret('first-cal-webhook'), 'webhookSecret')).toBe(secret);
    expect(condition(await get('first'), 'Ready')?.status).toBe('True');
  });
});
