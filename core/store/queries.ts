import type pg from 'pg';
import { formatDecimal } from '../money.js';

export interface ConversionQuery {
  integration?: string;
  type?: string;
  since?: Date;
  until?: Date;
  limit: number;
  cursor?: string;
}

export interface Conversion {
  id: number;
  integration: string;
  source: string;
  type: string;
  providerType: string;
  providerEventId: string | null;
  occurredAt: string;
  receivedAt: string;
  revenue: { amountMinor: number; currency: string; amount: string } | null;
  customer: { id: string | null; email: string | null };
  account: string | null;
  livemode: boolean | null;
  attribution: Record<string, string>;
  details: Record<string, unknown>;
}

interface ConversionRow {
  id: number;
  integration: string;
  source: string;
  conversion_type: string;
  provider_type: string;
  provider_event_id: string | null;
  occurred_at: Date;
  received_at: Date;
  amount_minor: number | null;
  currency: string | null;
  customer_id: string | null;
  customer_email: string | null;
  account: string | null;
  livemode: boolean | null;
  attribution: Record<string, string>;
  details: Record<string, unknown>;
}

/** Newest first by the time the provider reports, then id; the cursor is the last row's position. */
export async function listConversions(
  pool: pg.Pool,
  q: ConversionQuery,
): Promise<{ items: Conversion[]; nextCursor: string | null }> {
  const where = ['conversion_type IS NOT NULL'];
  const values: unknown[] = [];
  const add = (sql: string, value: unknown) => {
    values.push(value);
    where.push(sql.replace('?', `$${values.length}`));
  };
  if (q.integration) add('integration = ?', q.integration);
  if (q.type) add('conversion_type = ?', q.type);
  if (q.since) add('occurred_at >= ?', q.since);
  if (q.until) add('occurred_at < ?', q.until);
  if (q.cursor) {
    const { at, id } = decodeCursor(q.cursor);
    values.push(at, id);
    where.push(`(occurred_at, id) < ($${values.length - 1}, $${values.length})`);
  }
  values.push(q.limit + 1);
  const { rows } = await pool.query<ConversionRow>(
    `SELECT id, integration, source, conversion_type, provider_type, provider_event_id, occurred_at, received_at,
            amount_minor, currency, customer_id, customer_email, account, livemode, attribution, details
       FROM events WHERE ${where.join(' AND ')}
      ORDER BY occurred_at DESC, id DESC LIMIT $${values.length}`,
    values,
  );
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return {
    items: page.map(toConversion),
    nextCursor: rows.length > q.limit && last ? encodeCursor(last.occurred_at, last.id) : null,
  };
}

function toConversion(r: ConversionRow): Conversion {
  return {
    id: r.id,
    integration: r.integration,
    source: r.source,
    type: r.conversion_type,
    providerType: r.provider_type,
    providerEventId: r.provider_event_id,
    occurredAt: r.occurred_at.toISOString(),
    receivedAt: r.received_at.toISOString(),
    revenue:
      r.amount_minor !== null && r.currency !== null
        ? {
            amountMinor: r.amount_minor,
            currency: r.currency,
            amount: formatDecimal(r.amount_minor, r.currency),
          }
        : null,
    customer: { id: r.customer_id, email: r.customer_email },
    account: r.account,
    livemode: r.livemode,
    attribution: r.attribution,
    details: r.details,
  };
}

export class InvalidCursor extends Error {}

function encodeCursor(at: Date, id: number): string {
  return Buffer.from(`${at.toISOString()}|${id}`).toString('base64url');
}

function decodeCursor(cursor: string): { at: Date; id: number } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString().split('|');
  const date = new Date(at ?? '');
  const n = Number(id);
  if (Number.isNaN(date.getTime()) || !Number.isSafeInteger(n)) throw new InvalidCursor('invalid cursor');
  return { at: date, id: n };
}

export const REVENUE_WINDOWS = { '24h': '24 hours', '7d': '7 days', '30d': '30 days' } as const;

export interface RevenueTotal {
  currency: string;
  amountMinor: number;
  amount: string;
}

export interface IntegrationStats {
  integration: string;
  counts: Record<string, number>;
  lastEventTime: string | null;
  revenue: Record<keyof typeof REVENUE_WINDOWS, RevenueTotal[]>;
}

/** Counts per type, the last event, and revenue per currency where each payment counts once. */
export async function integrationStats(pool: pg.Pool, integration: string): Promise<IntegrationStats> {
  const [counts, revenue] = await Promise.all([
    pool.query<{ type: string; n: number; last: Date }>(
      `SELECT coalesce(conversion_type, provider_type) AS type, count(*)::bigint AS n, max(received_at) AS last
         FROM events WHERE integration = $1 GROUP BY 1 ORDER BY 1`,
      [integration],
    ),
    pool.query<{ window: string; currency: string; total: number }>(
      `SELECT w.name AS window, m.currency, sum(m.amount_minor)::bigint AS total
         FROM (VALUES ('24h', interval '24 hours'), ('7d', interval '7 days'), ('30d', interval '30 days')) AS w(name, span)
         JOIN money_movements m ON m.integration = $1 AND m.same_as IS NULL AND m.occurred_at >= now() - w.span
        GROUP BY w.name, m.currency ORDER BY w.name, m.currency`,
      [integration],
    ),
  ]);
  const windows = Object.fromEntries(
    Object.keys(REVENUE_WINDOWS).map((w) => [w, [] as RevenueTotal[]]),
  ) as Record<keyof typeof REVENUE_WINDOWS, RevenueTotal[]>;
  for (const r of revenue.rows) {
    windows[r.window as keyof typeof REVENUE_WINDOWS].push({
      currency: r.currency,
      amountMinor: r.total,
      amount: formatDecimal(r.total, r.currency),
    });
  }
  const last = counts.rows.reduce<Date | null>((max, r) => (max && max > r.last ? max : r.last), null);
  return {
    integration,
    counts: Object.fromEntries(counts.rows.map((r) => [r.type, r.n])),
    lastEventTime: last?.toISOString() ?? null,
    revenue: windows,
  };
}
