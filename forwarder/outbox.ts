import type pg from 'pg';
import type { StoredEvent } from './mapping.js';

/**
 * The outbox as the forwarder uses it. Rows are claimed with a lease (performance.md §6): one
 * autocommitted statement sets locked_until on up to `limit` due rows, skipping rows another worker
 * holds, and returns them with their events. No transaction stays open across the POST to Meta; a
 * crashed worker's rows become due again when the lease expires and are re-sent with the same event_id.
 */

export const STATUS = { pending: 0, sent: 1, dead: 2, skipped: 3 } as const;

/**
 * A claimed batch's lease: `value` is the exact locked_until the claim wrote (text, to keep PostgreSQL's
 * microseconds), so a renewal can tell rows still held from rows another worker claimed after expiry.
 */
export interface Lease {
  value: string;
  renewedAt: number;
  /** The rows held under it. */
  ids: number[];
}

export interface ClaimedRow {
  outboxId: number;
  attempts: number;
  event: StoredEvent;
  /** Shared by every row of the batch. */
  lease: Lease;
}

interface Row {
  outbox_id: number;
  attempts: number;
  lease: string;
  integration: string;
  provider_type: string;
  /** occurred_at in Unix milliseconds: a number parses far cheaper than a timestamptz. */
  occurred_ms: number;
  amount_minor: number | null;
  currency: string | null;
  customer_id: string | null;
  customer_email: string | null;
  account: string | null;
  attribution: Record<string, string>;
  details: Record<string, unknown>;
}

/** Only the columns mapping and customer look-ups read: every column is parsed for 1,000 rows a batch. */
const CLAIM = `
  WITH claimed AS (
    UPDATE outbox SET locked_until = now() + make_interval(secs => $3)
     -- = ANY(ARRAY(…)) looks the claimed ids up by primary key; IN (…) let the planner scan the whole table.
     WHERE id = ANY(ARRAY(SELECT id FROM outbox
                           WHERE destination = $1 AND status = 0 AND next_attempt_at <= now()
                             AND (locked_until IS NULL OR locked_until < now())
                           ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING id, event_id, attempts, locked_until::text AS lease)
  SELECT c.id AS outbox_id, c.attempts, c.lease, e.integration, e.provider_type,
         date_part('epoch', e.occurred_at) * 1000 AS occurred_ms, e.amount_minor, e.currency, e.customer_id,
         e.customer_email, e.account, e.attribution, e.details
    FROM claimed c JOIN events e ON e.id = c.event_id
   ORDER BY c.id`;

export async function claim(
  pool: pg.Pool,
  destination: string,
  limit: number,
  leaseSeconds: number,
): Promise<ClaimedRow[]> {
  const { rows } = await pool.query<Row>({
    name: 'tally-forwarder-claim',
    text: CLAIM,
    values: [destination, limit, leaseSeconds],
  });
  const lease: Lease = {
    value: rows[0]?.lease ?? '',
    renewedAt: Date.now(),
    ids: rows.map((r) => r.outbox_id),
  };
  return rows.map((r) => ({
    outboxId: r.outbox_id,
    attempts: r.attempts,
    lease,
    event: {
      integration: r.integration,
      providerType: r.provider_type,
      occurredAt: new Date(r.occurred_ms),
      amountMinor: r.amount_minor,
      currency: r.currency,
      customerId: r.customer_id,
      customerEmail: r.customer_email,
      account: r.account,
      attribution: r.attribution,
      details: r.details,
    },
  }));
}

export interface Outcomes {
  sent: number[];
  skipped: { id: number; reason: string; message: string }[];
  dead: { id: number; reason: string; message: string }[];
  /** Due again at `at`; `countAttempt` false when the destination was not at fault (paused pixel). */
  retry: { id: number; at: Date; error: string; countAttempt: boolean }[];
}

export const emptyOutcomes = (): Outcomes => ({ sent: [], skipped: [], dead: [], retry: [] });

/** Extends a batch's lease on all its rows still held under it; returns their ids. */
export async function renewLease(pool: pg.Pool, lease: Lease, leaseSeconds: number): Promise<Set<number>> {
  const { rows } = await pool.query<{ id: number; lease: string }>(
    `UPDATE outbox SET locked_until = now() + make_interval(secs => $3)
      WHERE id = ANY($1::bigint[]) AND status = 0 AND locked_until = $2::timestamptz
      RETURNING id, locked_until::text AS lease`,
    [lease.ids, lease.value, leaseSeconds],
  );
  if (rows[0]) lease.value = rows[0].lease;
  lease.renewedAt = Date.now();
  lease.ids = rows.map((r) => r.id);
  return new Set(rows.map((r) => r.id));
}

/** Ends the lease of rows not worked on; their attempts and errors stay as they were. */
export async function release(pool: pg.Pool, ids: number[]): Promise<void> {
  await pool.query('UPDATE outbox SET locked_until = NULL WHERE id = ANY($1::bigint[])', [ids]);
}

/**
 * Writes a batch's outcomes in one transaction: a row's fate is recorded once, whatever happens next,
 * and the destination's total of sent events rises with it.
 */
export async function record(pool: pg.Pool, destination: string, o: Outcomes): Promise<void> {
  const client = await pool.connect();
  let failure: Error | undefined;
  try {
    await client.query('BEGIN');
    if (o.sent.length > 0) {
      await client.query({
        name: 'tally-forwarder-sent',
        text: `UPDATE outbox SET status = 1, sent_at = now(), locked_until = NULL, attempts = attempts + 1
                WHERE id = ANY($1::bigint[])`,
        values: [o.sent],
      });
    }
    for (const [rows, status] of [
      [o.skipped, STATUS.skipped],
      [o.dead, STATUS.dead],
    ] as const) {
      if (rows.length === 0) continue;
      await client.query(
        `UPDATE outbox o SET status = $4, locked_until = NULL, attempts = o.attempts + 1,
                failure_reason = u.reason, last_error = u.message
           FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, reason, message) WHERE o.id = u.id`,
        [rows.map((r) => r.id), rows.map((r) => r.reason), rows.map((r) => r.message), status],
      );
    }
    if (o.retry.length > 0) {
      await client.query(
        `UPDATE outbox o SET locked_until = NULL, next_attempt_at = u.at, last_error = u.error,
                attempts = o.attempts + CASE WHEN u.counted THEN 1 ELSE 0 END
           FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::boolean[]) AS u(id, at, error, counted)
          WHERE o.id = u.id`,
        [
          o.retry.map((r) => r.id),
          o.retry.map((r) => r.at.toISOString()),
          o.retry.map((r) => r.error),
          o.retry.map((r) => r.countAttempt),
        ],
      );
    }
    if (o.sent.length > 0) {
      // Last, so the destination's row is locked only for the commit: batches in flight share it.
      await client.query({
        name: 'tally-forwarder-sent-total',
        text: `INSERT INTO destination_totals (destination, sent) VALUES ($1, $2)
                 ON CONFLICT (destination) DO UPDATE SET sent = destination_totals.sent + EXCLUDED.sent`,
        values: [destination, o.sent.length],
      });
    }
    await client.query('COMMIT');
  } catch (err) {
    failure = err as Error;
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release(failure);
  }
}

/**
 * Makes each row the owner of its shared purchase event id, unless another row of the destination
 * already is (a unique index decides, so two loops or replicas holding the checkout and its first
 * invoice at once cannot both win). Returns the rows that own their id; a row re-claimed after a crash
 * still owns the id it set.
 */
export async function claimSharedIds(
  pool: pg.Pool,
  rows: { id: number; sharedEventId: string }[],
): Promise<Set<number>> {
  const owners = new Set<number>();
  for (const r of rows) {
    try {
      await pool.query('UPDATE outbox SET shared_event_id = $2 WHERE id = $1', [r.id, r.sharedEventId]);
      owners.add(r.id);
    } catch (err) {
      if ((err as { code?: string }).code !== '23505') throw err;
    }
  }
  return owners;
}

export interface RedriveFilter {
  /** MetaPixel namespace/name. */
  pixel?: string;
  outboxIds?: number[];
  /** events.id of the stored events. */
  eventIds?: number[];
  /** Dead-letter reason, e.g. invalid_event. */
  reason?: string;
}

/** Dead-lettered rows matching every given filter go back to pending, due now, with a fresh attempt count. */
export async function redriveDeadLetters(pool: pg.Pool, f: RedriveFilter): Promise<number[]> {
  const where = ['status = 2'];
  const values: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    values.push(value);
    where.push(sql.replace('?', `$${values.length}`));
  };
  if (f.pixel) add('destination = ?', `meta:${f.pixel}`);
  if (f.outboxIds?.length) add('id = ANY(?::bigint[])', f.outboxIds);
  if (f.eventIds?.length) add('event_id = ANY(?::bigint[])', f.eventIds);
  if (f.reason) add('failure_reason = ?', f.reason);
  if (values.length === 0) throw new Error('redrive needs a pixel, outbox ids, event ids or a reason');
  const { rows } = await pool.query<{ id: number }>(
    `UPDATE outbox SET status = 0, attempts = 0, next_attempt_at = now(), locked_until = NULL,
            failure_reason = NULL, last_error = 'redriven; before: ' || coalesce(last_error, '')
      WHERE ${where.join(' AND ')} RETURNING id`,
    values,
  );
  return rows.map((r) => r.id).sort((a, b) => a - b);
}

export interface DeadLetter {
  outboxId: number;
  eventId: number;
  pixel: string;
  providerType: string;
  providerEventId: string | null;
  integration: string;
  occurredAt: string;
  attempts: number;
  reason: string | null;
  error: string | null;
  createdAt: string;
}

export async function listDeadLetters(
  pool: pg.Pool,
  q: { pixel?: string; reason?: string; afterId?: number; limit: number },
): Promise<{ items: DeadLetter[]; nextCursor: string | null }> {
  const where = ['o.status = 2'];
  const values: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    values.push(value);
    where.push(sql.replace('?', `$${values.length}`));
  };
  if (q.pixel) add('o.destination = ?', `meta:${q.pixel}`);
  if (q.reason) add('o.failure_reason = ?', q.reason);
  if (q.afterId !== undefined) add('o.id > ?', q.afterId);
  values.push(q.limit + 1);
  const { rows } = await pool.query<{
    id: number;
    event_id: number;
    destination: string;
    provider_type: string;
    provider_event_id: string | null;
    integration: string;
    occurred_at: Date;
    attempts: number;
    failure_reason: string | null;
    last_error: string | null;
    created_at: Date;
  }>(
    `SELECT o.id, o.event_id, o.destination, e.provider_type, e.provider_event_id, e.integration, e.occurred_at,
            o.attempts, o.failure_reason, o.last_error, o.created_at
       FROM outbox o JOIN events e ON e.id = o.event_id
      WHERE ${where.join(' AND ')} ORDER BY o.id LIMIT $${values.length}`,
    values,
  );
  const page = rows.slice(0, q.limit);
  return {
    items: page.map((r) => ({
      outboxId: r.id,
      eventId: r.event_id,
      pixel: r.destination.replace(/^meta:/, ''),
      providerType: r.provider_type,
      providerEventId: r.provider_event_id,
      integration: r.integration,
      occurredAt: r.occurred_at.toISOString(),
      attempts: r.attempts,
      reason: r.failure_reason,
      error: r.last_error,
      createdAt: r.created_at.toISOString(),
    })),
    nextCursor: rows.length > q.limit ? String(page[page.length - 1]!.id) : null,
  };
}

export interface DestinationStats {
  pending: number;
  deadLettered: number;
  oldestPendingSeconds: number | null;
  /** Events the destination accepted, ever, by every replica. */
  sentTotal: number;
}

/**
 * Per destination: pending and dead-lettered rows, the age of the oldest pending one, and the sent
 * total. They read only the partial indexes (status 0 or 2) and destination_totals, never the sent
 * history, so scrapes stay cheap.
 */
export async function destinationStats(pool: pg.Pool): Promise<Map<string, DestinationStats>> {
  const { rows } = await pool.query<{
    destination: string;
    pending: number;
    dead: number;
    oldest: number | null;
  }>(
    `SELECT destination, sum(pending)::bigint AS pending, sum(dead)::bigint AS dead, max(oldest) AS oldest
       FROM (SELECT destination, count(*) AS pending, 0 AS dead,
                    extract(epoch FROM now() - min(created_at))::float8 AS oldest
               FROM outbox WHERE status = 0 GROUP BY destination
             UNION ALL
             SELECT destination, 0, count(*), NULL FROM outbox WHERE status = 2 GROUP BY destination) s
      GROUP BY destination`,
  );
  const totals = await pool.query<{ destination: string; sent: number }>(
    'SELECT destination, sent FROM destination_totals',
  );
  const stats = new Map<string, DestinationStats>(
    rows.map((r) => [
      r.destination,
      { pending: r.pending, deadLettered: r.dead, oldestPendingSeconds: r.oldest, sentTotal: 0 },
    ]),
  );
  for (const t of totals.rows) {
    const s = stats.get(t.destination);
    if (s) s.sentTotal = t.sent;
    else
      stats.set(t.destination, {
        pending: 0,
        deadLettered: 0,
        oldestPendingSeconds: null,
        sentTotal: t.sent,
      });
  }
  return stats;
}

/**
 * Deletes sent and skipped rows queued more than `retentionDays` ago, in chunks of `chunk` rows so no
 * transaction runs long, and returns how many went. Pending and dead-lettered rows stay whatever their
 * age. Rows are visited in id order below the first row young enough to keep, so a run reads the old
 * rows only, not the whole table.
 */
export async function deleteFinishedRows(
  pool: pg.Pool,
  retentionDays: number,
  chunk = 5_000,
): Promise<number> {
  const { rows } = await pool.query<{ cutoff: Date; bound: number | null }>(
    `SELECT now() - make_interval(days => $1) AS cutoff,
            (SELECT id FROM outbox WHERE created_at >= now() - make_interval(days => $1) ORDER BY id LIMIT 1) AS bound`,
    [retentionDays],
  );
  const { cutoff, bound } = rows[0]!;
  let deleted = 0;
  for (;;) {
    const { rowCount } = await pool.query(
      `DELETE FROM outbox WHERE id IN (
         SELECT id FROM outbox
          WHERE ($3::bigint IS NULL OR id < $3) AND status IN (${STATUS.sent}, ${STATUS.skipped}) AND created_at < $1
          ORDER BY id LIMIT $2)`,
      [cutoff, chunk, bound],
    );
    deleted += rowCount ?? 0;
    if ((rowCount ?? 0) < chunk) return deleted;
  }
}
