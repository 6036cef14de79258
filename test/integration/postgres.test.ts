import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { createTestSchema } from '../env/context.js';

describe('the test PostgreSQL', () => {
  const pools: pg.Pool[] = [];
  afterAll(async () => Promise.all(pools.map((p) => p.end())));

  it('is a real, durable server: a committed row is visible to a new connection, a rolled-back one is not', async () => {
    const { pool } = await createTestSchema('durable');
    pools.push(pool);
    await pool.query('CREATE TABLE events (id text PRIMARY KEY, amount bigint NOT NULL)');
    const client = await pool.connect();
    await client.query('BEGIN');
    await client.query("INSERT INTO events VALUES ('evt_committed', 1999)");
    await client.query('COMMIT');
    await client.query('BEGIN');
    await client.query("INSERT INTO events VALUES ('evt_rolled_back', 1)");
    await client.query('ROLLBACK');
    client.release();

    const fresh = new pg.Client({ connectionString: inject('databaseUrl') });
    await fresh.connect();
    const { rows } = await pool.query<{ id: string; amount: string }>('SELECT id, amount FROM events');
    expect(rows).toEqual([{ id: 'evt_committed', amount: '1999' }]);
    const version = await fresh.query<{ server_version_num: string }>('SHOW server_version_num');
    expect(Number(version.rows[0]!.server_version_num)).toBeGreaterThanOrEqual(150000);
    await fresh.end();
  });

  it('gives each test file a schema of its own', async () => {
    const a = await createTestSchema('iso');
    const b = await createTestSchema('iso');
    pools.push(a.pool, b.pool);
    await a.pool.query('CREATE TABLE only_here (n int)');
    const lookup = "SELECT to_regclass('only_here')::text AS t";
    expect((await a.pool.query<{ t: string | null }>(lookup)).rows[0]!.t).toBe('only_here');
    expect((await b.pool.query<{ t: string | null }>(lookup)).rows[0]!.t).toBeNull();
    await expect(b.pool.query('INSERT INTO only_here VALUES (1)')).rejects.toThrow(
      /relation "only_here" does not exist/,
    );
  });
});
