import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrate } from './migrations.js';

interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface SchemaState {
  ready: boolean;
  /** Resolves once the migrations are applied. */
  done: Promise<void>;
  stop(): void;
}

/** Applies migrations, retrying while the database is unreachable, so the process stays up (and not ready). */
export function keepMigrating(pool: pg.Pool, log: Log): SchemaState {
  let resolve!: () => void;
  let stopped = false;
  const state: SchemaState = {
    ready: false,
    done: new Promise<void>((r) => (resolve = r)),
    stop: () => void (stopped = true),
  };
  void (async () => {
    for (let delay = 500; !stopped; delay = Math.min(delay * 2, 10_000)) {
      try {
        const applied = await migrate(pool);
        if (applied.length > 0) log.info({ applied }, 'database migrated');
        state.ready = true;
        resolve();
        return;
      } catch (err) {
        log.warn({ error: (err as Error).message, retryInMs: delay }, 'database not ready');
        await sleep(delay);
      }
    }
  })();
  return state;
}

/** For /readyz: the database answers within a second. */
export async function databaseResponds(pool: pg.Pool): Promise<boolean> {
  try {
    await pool.query({ text: 'SELECT 1', query_timeout: 1_000 } as pg.QueryConfig);
    return true;
  } catch {
    return false;
  }
}
