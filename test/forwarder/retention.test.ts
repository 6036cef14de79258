import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deleteFinishedRows } from '../../forwarder/outbox.js';
import { bulkInsert, createEnv, waitFor, type Env } from './harness.js';

/** Sets status and age of the outbox rows of the events with these ordinals (1-based, in id order). */
async function age(env: Env, ordinals: number[], status: number, days: number) {
  await env.pool.query(
    `UPDATE outbox o SET status = $2::smallint, created_at = now() - make_interval(days => $3::int),
            sent_at = CASE WHEN $2::smallint = 1 THEN now() - make_interval(days => $3::int) END
       FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox) r
      WHERE o.id = r.id AND r.n = ANY($1::int[])`,
    [ordinals, status, days],
  );
}

async function rows(env: Env) {
  const { rows } = await env.pool.query<{ status: number; days: number }>(
    `SELECT status, round(extract(epoch FROM now() - created_at) / 86400)::int AS days FROM outbox ORDER BY id`,
  );
  return rows.map((r) => `${['pending', 'sent', 'dead', 'skipped'][r.status]}@${r.days}d`);
}

describe('forwarder: outbox retention', () => {
  let env: Env;
  beforeAll(async () => {
    env = await createEnv('ret');
  });
  afterAll(() => env.close());

  it('deletes sent and skipped rows past the retention period, in chunks, and keeps pending, dead-lettered and younger rows and every event', async () => {
    await bulkInsert(env.pool, 10, { prefix: 'ret1' });
    await age(env, [1, 2, 3], 1, 40); // sent long ago
    await age(env, [4], 3, 40); // skipped long ago
    await age(env, [5], 0, 40); // still pending: kept
    await age(env, [6], 2, 40); // dead-lettered: kept for a re-drive
    await age(env, [7, 8], 1, 10); // sent, younger than the period
    expect(await deleteFinishedRows(env.pool, 30, 2)).toBe(4);
    expect(await rows(env)).toEqual([
      'pending@40d',
      'dead@40d',
      'sent@10d',
      'sent@10d',
      'pending@0d',
      'pending@0d',
    ]);
    expect(await deleteFinishedRows(env.pool, 30)).toBe(0);
    expect(await deleteFinishedRows(env.pool, 8)).toBe(2);
    const { rows: events } = await env.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM events');
    expect(events[0]!.n).toBe(10);
  });

  it('runs in the forwarder once the schema is ready, and counts what it deleted', async () => {
    await env.pool.query('DELETE FROM outbox');
    await bulkInsert(env.pool, 3, { prefix: 'ret2' });
    await age(env, [1, 2, 3], 1, 31);
    const forwarder = await env.start();
    await waitFor(async () => (await rows(env)).length === 0, 'old sent rows deleted');
    const metrics = await (await fetch(`${forwarder.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/^tally_forwarder_outbox_rows_deleted_total 3$/m);
  });
});
