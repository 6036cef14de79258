import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NormalizedEvent } from '../../core/conversion.js';
import { migrate } from '../../core/db/migrations.js';
import { EventStore } from '../../core/store/event-store.js';
import { createTestSchema } from '../env/context.js';

function event(n: number, money = true): NormalizedEvent {
  return {
    source: 'stripe',
    integration: 'growth/acme',
    idempotencyKey: `self:evt_${n}`,
    providerEventId: `evt_${n}`,
    providerType: 'payment_intent.succeeded',
    conversionType: 'payment_completed',
    occurredAt: new Date(),
    amount: { minor: 1000 + n, currency: 'USD' },
    money: money
      ? { key: `payment_intent:pi_${n}`, amount: { minor: 1000 + n, currency: 'USD' }, aliases: [] }
      : undefined,
    customerId: `cus_${n}`,
    attribution: { fbc: `fb.1.${n}` },
    details: { paymentIntent: `pi_${n}` },
    payload: JSON.stringify({ id: `evt_${n}` }),
    destinations: [],
  };
}

describe('EventStore: natural group commit', () => {
  let pool: pg.Pool;
  beforeAll(async () => {
    ({ pool } = await createTestSchema('store'));
    await migrate(pool);
  });
  afterAll(() => pool.end());

  it('puts the events that arrive while a transaction runs into the next one, each answered after its own commit', async () => {
    const batches: number[] = [];
    const revenue: number[] = [];
    const store = new EventStore(pool, {
      onBatch: (size, saved) => {
        batches.push(size);
        revenue.push(saved.newRevenue.reduce((sum, r) => sum + r.amountMinor, 0));
      },
    });
    const first = store.save(event(1));
    // Queued while the first transaction is in flight: all five go in the second.
    const next = [2, 3, 4, 5, 6].map((n) => store.save(event(n, n !== 4)));
    const order: string[] = [];
    void first.then(() => order.push('first'));
    void Promise.all(next).then(() => order.push('next'));
    expect(await Promise.all([first, ...next])).toEqual(Array(6).fill('inserted'));
    expect(batches).toEqual([1, 5]);
    expect(order).toEqual(['first', 'next']);
    // Revenue counts the new money movements of each batch; event 4 reports none.
    expect(revenue).toEqual([1001, 1002 + 1003 + 1005 + 1006]);
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM money_movements');
    expect(rows[0]!.n).toBe(5);
  });

  it('keeps writing after a failed batch: the failure reaches only that batch’s callers', async () => {
    const store = new EventStore(pool);
    const broken = { ...event(7), occurredAt: new Date(Number.NaN) };
    await expect(store.save(broken)).rejects.toThrow();
    expect(await store.save(event(8))).toBe('inserted');
    expect(await store.save(event(8))).toBe('duplicate');
  });
});
