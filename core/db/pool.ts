import pg from 'pg';
import type { Logger } from 'pino';

// bigint (int8) columns hold minor units and counts: parse them as numbers, which is exact up to 2^53.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`int8 value ${value} is beyond exact JavaScript integers`);
  return n;
});

export interface PoolOptions {
  max?: number;
  /** A hung or unreachable server must turn into a fast error, not a stalled request. */
  connectionTimeoutMillis?: number;
  statementTimeoutMillis?: number;
}

export function createPool(url: string, log: Logger, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    connectionTimeoutMillis: opts.connectionTimeoutMillis ?? 2_000,
    statement_timeout: opts.statementTimeoutMillis ?? 5_000,
    query_timeout: (opts.statementTimeoutMillis ?? 5_000) + 1_000,
    idleTimeoutMillis: 30_000,
    application_name: 'tally',
  });
  // Without a listener a connection's error (the server went away) is an uncaught exception that ends
  // the process: the pool listens for idle clients, this for clients that are checked out.
  pool.on('error', (err) => log.warn({ error: err.message }, 'idle PostgreSQL connection failed'));
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ error: err.message }, 'PostgreSQL connection failed'));
  });
  return pool;
}

/** The URL without its password, for logs and errors. */
export function redactDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable database URL)';
  }
}
