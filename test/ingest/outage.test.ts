import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../core/db/embedded-postgres.js';
import { invoice, signStripe, stripeEvent } from '../../core/samples/stripe.js';
import { startIngest, STRIPE_SECRET, type IngestUnderTest } from './harness.js';

/**
 * PostgreSQL stops under load and comes back. Providers behave like Stripe: each re-sends its current
 * event until it gets a 2xx, then moves to the next one.
 */
describe('ingest: a database outage under load', () => {
  let dir: string;
  let db: EmbeddedDatabase;
  let ingest: IngestUnderTest;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tally-outage-'));
    await chmod(dir, 0o755);
    db = await startEmbeddedPostgres(dir);
    ingest = await startIngest((base) => ({ ...base, database: { url: db.url } }));
  });
  afterAll(async () => {
    await ingest?.close();
    await db?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers 503 while PostgreSQL is down, stays up, recovers, and every acknowledged event is stored exactly once', async () => {
    const acked = new Set<string>();
    const statuses = new Map<number, number>();
    let phase: 'before' | 'down' | 'after' = 'before';
    const okWhileDown: string[] = [];
    let stop = false;

    const provider = async (n: number) => {
      for (let seq = 0; !stop && seq < 10_000; seq++) {
        const event = stripeEvent('invoice.paid', invoice({ amount_paid: 100 + n }), {
          id: `evt_p${n}_${seq}`,
        });
        const body = JSON.stringify(event);
        for (let attempt = 0; attempt < 2_000; attempt++) {
          const sentDuring = phase;
          const res = await fetch(`${ingest.webhookUrl}/webhooks/stripe/growth/acme`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              'stripe-signature': signStripe(body, STRIPE_SECRET),
            },
            body,
          }).catch(() => undefined);
          const status = res?.status ?? 0;
          await res?.arrayBuffer();
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status === 200) {
            acked.add(event.id);
            if (sentDuring === 'down' && phase === 'down') okWhileDown.push(event.id);
            break;
          }
          expect(status).toBe(503);
          expect(res?.headers.get('retry-after')).toBe('5');
          if (stop) return;
          await sleep(25);
        }
      }
    };

    const load = Promise.all(Array.from({ length: 20 }, (_, n) => provider(n)));
    await sleep(1_000);
    expect(acked.size).toBeGreaterThan(0);

    await db.stop();
    phase = 'down';
    await sleep(1_500);
    const during = await fetch(`${ingest.adminUrl}/readyz`);
    expect(during.status).toBe(503);
    expect((await fetch(`${ingest.adminUrl}/healthz`)).status).toBe(200);
    const ackedWhileDown = acked.size;

    await db.start();
    phase = 'after';
    await expect.poll(() => acked.size, { timeout: 20_000 }).toBeGreaterThan(ackedWhileDown + 20);
    expect((await fetch(`${ingest.adminUrl}/readyz`)).status).toBe(200);
    stop = true;
    await load;

    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);
    expect(okWhileDown).toEqual([]);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ provider_event_id: string; n: number }>(
      'SELECT provider_event_id, count(*)::int AS n FROM events GROUP BY 1',
    );
    await client.end();
    const stored = new Map(rows.map((r) => [r.provider_event_id, r.n]));
    const missing = [...acked].filter((id) => !stored.has(id));
    expect(missing).toEqual([]);
    expect(rows.filter((r) => r.n !== 1)).toEqual([]);
  });
});
