import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CalIntegration } from '../../operator/resources.js';
import { freePort } from '../env/processes.js';
import {
  condition,
  eventually,
  operatorNamespaces,
  resources,
  startOperator,
  type TestOperator,
} from './support.js';

describe('kubernetes pipeline mode without a reachable ingest', () => {
  let ns: string;
  let op: TestOperator;
  let r: ReturnType<typeof resources>;

  beforeAll(async () => {
    const names = await operatorNamespaces('k8smode');
    ns = names.ns;
    r = resources(ns);
    // Pods never start here: nothing listens where the ingest Service would be.
    op = await startOperator(names.opsNs, ns, {
      pipeline: 'kubernetes',
      publicBaseURL: 'https://hooks.example.test',
      ingestAdminURL: `http://127.0.0.1:${await freePort()}`,
    });
  });
  afterAll(async () => {
    await op?.close();
  });

  it('provisions the secret but does not claim Ready while ingest has not confirmed it', async () => {
    await r.apply('calintegrations', 'calls', { displayName: 'Calls' });
    const c = await eventually('IngestUnavailable', async () => {
      const c = await r.get<CalIntegration>('calintegrations', 'calls');
      return condition(c, 'IngestAvailable')?.reason === 'IngestUnavailable' && c;
    });
    expect(condition(c, 'SecretProvisioned')?.status).toBe('True');
    expect(condition(c, 'Ready')).toMatchObject({ status: 'False', reason: 'IngestUnavailable' });
    expect(c.status?.phase).toBe('Error');
    expect(c.status?.webhookURL).toBe(`https://hooks.example.test/webhooks/cal/${ns}/calls`);
    expect(op.localIngest).toBeUndefined();
  });
});
