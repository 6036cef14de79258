import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CalIntegration } from '../../operator/resources.js';
import { booking, calEnvelope, signCal } from '../../core/samples/cal.js';
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

describe('CalIntegration: generated secret, local pipeline, truthful status', () => {
  let ns: string;
  let opsNs: string;
  let op: TestOperator;
  let r: ReturnType<typeof resources>;
  const get = (name: string) => r.get<CalIntegration>('calintegrations', name);

  beforeAll(async () => {
    assertBuilt();
    ({ ns, opsNs } = await operatorNamespaces('cal'));
    r = resources(ns);
    op = await startOperator(opsNs, ns);
  });
  afterAll(async () => {
    await op?.close();
  });

  it('generates an owned webhook secret and reports Ready only once ingest has loaded the integration', async () => {
    await r.apply('calintegrations', 'demo-calls', { displayName: 'Demo calls' });
    const ready = await eventually('Ready', async () => {
      const c = await get('demo-calls');
      return condition(c, 'Ready')?.status === 'True' && c;
    });
    expect(ready.status?.phase).toBe('Waiting for first booking');
    expect(ready.status?.webhookURL).toBe(`${op.localIngest!.webhookURL}/webhooks/cal/${ns}/demo-calls`);
    expect(ready.status?.webhookSecretRef).toEqual({ name: 'demo-calls-cal-webhook', key: 'webhookSecret' });
    expect(ready.status?.observedGeneration).toBe(ready.metadata.generation);
    expect(condition(ready, 'IngestAvailable')?.reason).toBe('Loaded');

    const secret = await r.secret('demo-calls-cal-webhook');
    const value = decode(secret, 'webhookSecret')!;
    expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secret?.metadata?.ownerReferences).toEqual([
      expect.objectContaining({
        kind: 'CalIntegration',
        name: 'demo-calls',
        uid: ready.metadata.uid,
        controller: true,
        blockOwnerDeletion: true,
      }),
    ]);
    expect(secret?.metadata?.managedFields?.map((f) => f.manager)).toContain('tally-operator');

    // What ingest itself says it serves, not what the operator believes.
    const served = (await (await fetch(`${op.localIngest!.adminURL}/api/v1/integrations`)).json()) as {
      cal: string[];
    };
    expect(served.cal).toContain(`${ns}/demo-calls`);

    // No secret in status or events.
    const events = await r.events('demo-calls');
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['SecretProvisioned', 'Ready']));
    expect(JSON.stringify([ready.status, events])).not.toContain(value);
  });

  it('keeps the secret across reconciles and an operator restart', async () => {
    const before = await r.secret('demo-calls-cal-webhook');
    await op.close();
    op = await startOperator(opsNs, ns, {
      localDir: op.dir,
      localIngestPort: Number(new URL(op.localIngest!.webhookURL).port),
    });
    await r.apply('calintegrations', 'demo-calls', { displayName: 'Demo calls, renamed' });
    const c = await eventually('the new generation observed', async () => {
      const c = await get('demo-calls');
      return (
        c?.status?.observedGeneration === c?.metadata.generation &&
        condition(c, 'Ready')?.status === 'True' &&
        c
      );
    });
    expect(c.metadata.generation).toBe(2);
    expect((condition(c, 'Ready') as { observedGeneration?: number } | undefined)?.observedGeneration).toBe(
      2,
    );
    const after = await r.secret('demo-calls-cal-webhook');
    expect(decode(after, 'webhookSecret')).toBe(decode(before, 'webhookSecret'));
  });

  it('turns signed bookings into "Receiving booking events" with counts', async () => {
    const secret = decode(await r.secret('demo-calls-cal-webhook'), 'webhookSecret')!;
    const body = JSON.stringify(calEnvelope('BOOKING_CREATED', booking()));
    const res = await fetch(`${op.localIngest!.webhookURL}/webhooks/cal/${ns}/demo-calls`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-cal-signature-256': signCal(body, secret) },
      body,
    });
    expect(res.status).toBe(200);
    const c = await eventually('Receiving', async () => {
      const c = await get('demo-calls');
      return c?.status?.phase === 'Receiving booking events' && c;
    });
    expect(c.status?.bookingCounts).toEqual({ booking_created: 1 });
    expect(c.status?.lastEventTime).toMatch(/^\d{4}-/);
    expect(condition(c, 'Receiving')?.status).toBe('True');
  });

  it('rotates the secret only when asked, keeping the previous one valid', async () => {
    const old = decode(await r.secret('demo-calls-cal-webhook'), 'webhookSecret')!;
    await r.annotate('calintegrations', 'demo-calls', { 'tally.dev/rotate-webhook-secret': '2026-12-04' });
    const rotated = await eventually('a new secret', async () => {
      const s = await r.secret('demo-calls-cal-webhook');
      return decode(s, 'webhookSecret') !== old && s;
    });
    expect(decode(rotated, 'previousWebhookSecret')).toBe(old);
    // Both verify at ingest once it has loaded the rotation.
    const fresh = decode(rotated, 'webhookSecret')!;
    for (const secret of [fresh, old]) {
      await eventually('ingest accepts the rotated secrets', async () => {
        const body = JSON.stringify(calEnvelope('BOOKING_CREATED', booking()));
        const res = await fetch(`${op.localIngest!.webhookURL}/webhooks/cal/${ns}/demo-calls`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-cal-signature-256': signCal(body, secret) },
          body,
        });
        return res.status === 200;
      });
    }
    // The same annotation value again does not rotate again.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(decode(await r.secret('demo-calls-cal-webhook'), 'webhookSecret')).toBe(fresh);
    expect((await r.events('demo-calls')).filter((e) => e.reason === 'SecretRotated')).toHaveLength(1);
  });

  it('refuses to take over a Secret it does not own, and says what to fix', async () => {
    await r.putSecret('taken-cal-webhook', { webhookSecret: 'someone-elses-secret-value' });
    await r.apply('calintegrations', 'taken', { displayName: 'Taken' });
    const c = await eventually('SecretConflict', async () => {
      const c = await get('taken');
      return condition(c, 'Ready')?.reason === 'SecretConflict' && c;
    });
    expect(condition(c, 'Ready')?.status).toBe('False');
    expect(condition(c, 'Ready')?.message).toContain(
      `Secret ${ns}/taken-cal-webhook exists and is not owned`,
    );
    expect(decode(await r.secret('taken-cal-webhook'), 'webhookSecret')).toBe('someone-elses-secret-value');
    expect((await r.events('taken')).map((e) => e.reason)).toContain('SecretConflict');
  });

  it('drops a deleted integration from the configuration ingest serves', async () => {
    await r.delete('calintegrations', 'demo-calls');
    await eventually('ingest no longer serves it', async () => {
      const served = (await (await fetch(`${op.localIngest!.adminURL}/api/v1/integrations`)).json()) as {
        cal: string[];
      };
      return !served.cal.includes(`${ns}/demo-calls`);
    });
  });
});
