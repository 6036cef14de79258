import { Counter, Gauge, Histogram } from 'prom-client';
import { createRegistry } from '../core/metrics.js';

/** The forwarder's Prometheus metrics. `pixel` labels are only ever configured MetaPixel names (namespace/name). */
export function createForwarderMetrics() {
  const registry = createRegistry();
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames, registers: [registry] });
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Gauge<L>({ name, help, labelNames, registers: [registry] });
  return {
    registry,
    sent: counter('tally_forwarder_events_sent_total', 'Events Meta accepted.', ['pixel']),
    failed: counter(
      'tally_forwarder_events_failed_total',
      'Event deliveries that failed and will be retried, by error class.',
      ['pixel', 'reason'],
    ),
    deadLettered: counter(
      'tally_forwarder_events_dead_lettered_total',
      'Events set aside for good (until re-driven), by reason.',
      ['pixel', 'reason'],
    ),
    skipped: counter(
      'tally_forwarder_events_skipped_total',
      'Outbox rows not sent on purpose (unpaid checkout, $0, payment already sent), by reason.',
      ['pixel', 'reason'],
    ),
    requests: counter('tally_forwarder_requests_total', 'Conversions API requests, by outcome.', [
      'pixel',
      'outcome',
    ]),
    batchSize: new Histogram({
      name: 'tally_forwarder_batch_events',
      help: 'Events per Conversions API request.',
      labelNames: ['pixel'],
      buckets: [1, 5, 10, 50, 100, 250, 500, 1000],
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'tally_forwarder_request_duration_seconds',
      help: 'Conversions API request latency.',
      labelNames: ['pixel'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10],
      registers: [registry],
    }),
    pending: gauge('tally_forwarder_outbox_pending_events', 'Outbox rows waiting to be sent.', ['pixel']),
    retentionDeleted: counter(
      'tally_forwarder_outbox_rows_deleted_total',
      'Sent and skipped outbox rows deleted after the retention period.',
      [],
    ),
    deadLetterDepth: gauge(
      'tally_forwarder_outbox_dead_lettered_events',
      'Outbox rows dead-lettered and not re-driven.',
      ['pixel'],
    ),
    oldestPending: gauge(
      'tally_forwarder_outbox_oldest_pending_age_seconds',
      'Age of the oldest outbox row waiting to be sent (0 when none).',
      ['pixel'],
    ),
    paused: gauge(
      'tally_forwarder_pixel_paused',
      '1 while a pixel is paused because Meta refuses its access token (or none is configured).',
      ['pixel'],
    ),
    lastSuccess: gauge(
      'tally_forwarder_last_success_timestamp_seconds',
      'When Meta last accepted a batch for the pixel.',
      ['pixel'],
    ),
    customerLookups: counter(
      'tally_forwarder_stripe_customer_lookups_total',
      'Stripe customer look-ups, by result (found, cache_hit, not_found, deleted, unauthorized, rate_limited, …).',
      ['integration', 'result'],
    ),
    configReloads: counter('tally_forwarder_config_reloads_total', 'Configuration reloads, by result.', [
      'result',
    ]),
  };
}
export type ForwarderMetrics = ReturnType<typeof createForwarderMetrics>;
