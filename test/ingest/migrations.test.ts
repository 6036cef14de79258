import type pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import type { NormalizedEvent } from '../../core/conversion.js';
import { migrate, MIGRATIONS } from '../../core/db/migrations.js';
import { EventStore } from '../../core/store/event-store.js';
import { createTestSchema } from '../env/context.js';

/** store_events() as the previous version calls it: 20 arrays, payloads as jsonb[]. */
async function storeEventsV4(pool: pg.Pool, key: string, payload: string): Promise<unknown> {
  const { rows } = await pool.query<{ r: unknown }>(
    `SELECT store_events(ARRAY['stripe'], ARRAY['growth/acme'], ARRAY[$1], ARRAY[$1], ARRAY['invoice.paid'],
                         ARRAY['invoice_paid'], ARRAY[now()], ARRAY[1500::bigint], ARRAY['USD'], NULL, NULL, NULL,
                         NULL, ARRAY[false], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY[$2::jsonb],
                         '{}'::bigint[], '{}'::text[], ARRAY[NULL::jsonb]) AS r`,
    [key, payload],
  );
  return rows[0]!.r;
}

/** store_event_batch() as version 5 calls it: payloads joined into one text, the other JSON as jsonb[]. */
async function storeEventBatchV5(pool: pg.Pool, key: string, payload: string): Promise<unknown> {
  const { rows } = await pool.query<{ r: unknown }>(
    `SELECT store_event_batch(ARRAY['stripe'], ARRAY['growth/acme'], ARRAY[$1], ARRAY[$1], ARRAY['invoice.paid'],
                              ARRAY['invoice_paid'], ARRAY[now()], ARRAY[1500::bigint], ARRAY['USD'], NULL, NULL, NULL,
                              NULL, ARRAY[false], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], $2,
                              '{}'::bigint[], '{}'::text[], ARRAY[NULL::jsonb]) AS r`,
    [key, payload],
  );
  return rows[0]!.r;
}

function event(key: string, payload: string): NormalizedEvent {
  return {
    source: 'stripe',
    integration: 'growth/acme',
    idempotencyKey: key,
    providerEventId: key,
    providerType: 'invoice.paid',
    conversionType: 'invoice_paid',
    occurredAt: new Date(),
    attribution: {},
    details: {},
    payload,
    destinations: [],
  };
}

describe('schema migrations', () => {
  const pools: pg.Pool[] = [];
  afterAll(async () => Promise.all(pools.map((p) => p.end())));

  it('v5 to v8 keep stored events, and the store functions of versions 4 and 5 keep working during a rolling upgrade', async () => {
    const { pool } = await createTestSchema('mig');
    pools.push(pool);
    // The schema as the previous version left it.
    await pool.query(`CREATE TABLE schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    for (const m of MIGRATIONS.filter((m) => m.version <= 4)) {
      await pool.query(m.sql);
      await pool.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    await storeEventsV4(pool, 'self:evt_before', '{"id": "evt_before", "b": 1}');

    expect(await migrate(pool)).toEqual([5, 6, 7, 8]);
    expect(await migrate(pool)).toEqual([]);

    // Old replicas still serving: their calls store the event.
    expect(await storeEventsV4(pool, 'self:evt_old_replica', '{"id":"evt_old_replica"}')).toEqual({
      inserted: [1],
      revenue: [],
    });
    expect(await storeEventBatchV5(pool, 'self:evt_v5_replica', '{ "id":"evt_v5_replica" }')).toEqual({
      inserted: [1],
      revenue: [],
    });
    // The new code path, including a key repeated in one batch and one already stored.
    const store = new EventStore(pool);
    const pretty = '{\n  "id": "evt_after",\n  "z": 1,\n  "a": 2\n}';
    const results = await Promise.all([
      store.save(event('self:evt_after', pretty)),
      store.save(event('self:evt_after', pretty)),
      store.save(event('self:evt_before', '{}')),
    ]);
    expect(results).toEqual(['inserted', 'duplicate', 'duplicate']);
    await expect(store.save(event('self:evt_bad', '{"a":"\x1e"}'))).rejects.toThrow(
      'event self:evt_bad: the payload is not JSON text',
    );

    const { rows } = await pool.query<{ key: string; payload: string }>(
      'SELECT idempotency_key AS key, payload::text AS payload FROM events ORDER BY id',
    );
    expect(rows).toEqual([
      { key: 'self:evt_before', payload: '{"b": 1, "id": "evt_before"}' }, // stored as jsonb before v5
      { key: 'self:evt_old_replica', payload: '{"id": "evt_old_replica"}' },
      { key: 'self:evt_v5_replica', payload: '{ "id":"evt_v5_replica" }' }, // byte for byte from v5 on
      { key: 'self:evt_after', payload: pretty },
    ]);
  });
});
