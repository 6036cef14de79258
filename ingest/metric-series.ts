import type pg from 'pg';
import { integrationId, type TallyConfig } from '../core/config/tally-config.js';
import type { IngestMetrics } from './metrics.js';

/**
 * Creates at 0 the series each configured integration will use, so that the first event after a
 * start or a config change shows in rate() and increase(): a series born holding its first increment
 * never shows that increment to them.
 */
export function zeroConfiguredSeries(metrics: IngestMetrics, config: TallyConfig): void {
  const sources = [
    ...config.stripe.map((s) => ({
      source: 'stripe',
      integration: integrationId(s),
      types: s.conversionTypes,
    })),
    ...config.cal.map((c) => ({ source: 'cal', integration: integrationId(c), types: c.bookingEvents })),
  ];
  for (const { source, integration, types } of sources) {
    metrics.received.inc({ source, integration }, 0);
    metrics.accepted.inc({ source, integration }, 0);
    metrics.duplicate.inc({ source, integration }, 0);
    for (const type of types) metrics.conversions.inc({ source, integration, type }, 0);
  }
}

/**
 * The revenue series of the currencies each configured integration was paid in lately, at 0. A
 * currency no payment has used yet cannot be known in advance: its first payment after a start is
 * in the raw counter but not in increase().
 */
export async function zeroRecentRevenueSeries(
  metrics: IngestMetrics,
  pool: pg.Pool,
  config: TallyConfig,
): Promise<void> {
  const integrations = config.stripe.map(integrationId);
  if (integrations.length === 0) return;
  const { rows } = await pool.query<{ integration: string; currency: string }>(
    `SELECT DISTINCT integration, currency FROM money_movements
      WHERE integration = ANY($1) AND same_as IS NULL AND occurred_at > now() - interval '35 days'`,
    [integrations],
  );
  for (const r of rows) metrics.revenue.inc({ integration: r.integration, currency: r.currency }, 0);
}
