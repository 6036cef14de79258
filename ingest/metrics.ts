import { Counter, Gauge, Histogram } from 'prom-client';
import { createRegistry } from '../core/metrics.js';

/** Ingest's Prometheus metrics. Integration labels are only ever configured names (or "unknown"). */
export function createIngestMetrics() {
  const registry = createRegistry();
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  return {
    registry,
    received: counter('tally_ingest_webhooks_received_total', 'Webhook requests received.', [
      'source',
      'integration',
    ]),
    accepted: counter('tally_ingest_webhooks_accepted_total', 'Webhooks stored as new events.', [
      'source',
      'integration',
    ]),
    duplicate: counter(
      'tally_ingest_webhooks_duplicate_total',
      'Webhooks already stored (provider retries).',
      ['source', 'integration'],
    ),
    ignored: counter(
      'tally_ingest_webhooks_ignored_total',
      'Verified webhooks answered 2xx but not stored.',
      ['source', 'integration', 'reason'],
    ),
    rejected: counter(
      'tally_ingest_webhooks_rejected_total',
      'Webhooks refused with a 4xx or 5xx, by reason.',
      ['source', 'integration', 'reason'],
    ),
    conversions: counter('tally_ingest_conversions_total', 'Conversions stored, by type.', [
      'source',
      'integration',
      'type',
    ]),
    revenue: counter(
      'tally_ingest_revenue_minor_units_total',
      'Revenue of new money movements in minor units (cents, yen, fils); each payment counts once.',
      ['integration', 'currency'],
    ),
    databaseErrors: counter('tally_ingest_database_errors_total', 'Failed database writes.', []),
    configReloads: counter('tally_ingest_config_reloads_total', 'Configuration reloads, by result.', [
      'result',
    ]),
    configLastSuccess: new Gauge({
      name: 'tally_ingest_config_last_reload_success_timestamp_seconds',
      help: 'When the configuration was last loaded successfully.',
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'tally_ingest_request_duration_seconds',
      help: 'Webhook request latency, from arrival to response.',
      labelNames: ['source', 'code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'tally_ingest_commit_batch_events',
      help: 'Events per database transaction (group commit).',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers: [registry],
    }),
  };
}
export type IngestMetrics = ReturnType<typeof createIngestMetrics>;
