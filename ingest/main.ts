import type { FastifyInstance } from 'fastify';
import { ConfigSource } from '../core/config/config-source.js';
import type { TallyConfig } from '../core/config/tally-config.js';
import { openDatabase } from '../core/db/embedded-postgres.js';
import { databaseResponds, keepMigrating } from '../core/db/schema-readiness.js';
import { createPool, redactDatabaseUrl } from '../core/db/pool.js';
import { createLogger } from '../core/logging.js';
import { EventStore } from '../core/store/event-store.js';
import { zeroConfiguredSeries, zeroRecentRevenueSeries } from './metric-series.js';
import { createIngestMetrics } from './metrics.js';
import { buildRouting, type Routing } from './routing.js';
import { buildAdminServer, buildWebhookServer } from './server.js';

export interface IngestOptions {
  configPath: string;
  /** Where the embedded PostgreSQL keeps its data when no database URL is configured. */
  dataDir: string;
  /** Overrides the configured ports (tests use 0). */
  port?: number;
  adminPort?: number;
  host?: string;
}

export interface RunningIngest {
  webhookUrl: string;
  adminUrl: string;
  close(): Promise<void>;
}

/** `tally ingest`: verify, store and acknowledge webhooks; serve the read API and metrics. */
export async function runIngest(opts: IngestOptions): Promise<RunningIngest> {
  const log = createLogger('ingest');
  const metrics = createIngestMetrics();
  let routing: Routing | undefined;
  // Reads the database once its schema is ready; a reload before that has nothing to read yet.
  let zeroRevenueSeries: (c: TallyConfig) => void = () => {};
  const config = await ConfigSource.load(opts.configPath, {
    onReload: (c, digest) => {
      routing = buildRouting(c, digest);
      zeroConfiguredSeries(metrics, c);
      zeroRevenueSeries(c);
      metrics.configReloads.inc({ result: 'success' });
      metrics.configLastSuccess.setToCurrentTime();
      log.info(
        { stripe: c.stripe.length, cal: c.cal.length, metaPixels: c.metaPixels.length },
        'configuration loaded',
      );
    },
    onReloadFailed: (err) => {
      metrics.configReloads.inc({ result: 'failure' });
      log.error({ error: err.message }, 'configuration rejected; the last good one stays live');
    },
  });
  config.watch();
  const settings = config.current().ingest;

  const db = await openDatabase(config.current().database.url, opts.dataDir);
  const url = db.url;
  log.info({ database: redactDatabaseUrl(url), from: db.source }, 'using PostgreSQL');
  const pool = createPool(url, log);
  const schema = keepMigrating(pool, log);
  void schema.done.then(() => {
    zeroRevenueSeries = (c) =>
      void zeroRecentRevenueSeries(metrics, pool, c).catch((err: Error) =>
        log.warn({ error: err.message }, 'could not read recent currencies for the revenue metric'),
      );
    zeroRevenueSeries(config.current());
  });

  const store = new EventStore(pool, {
    onBatch: (size, saved) => {
      metrics.batchSize.observe(size);
      for (const r of saved.newRevenue) {
        metrics.revenue.inc({ integration: r.integration, currency: r.currency }, r.amountMinor);
      }
    },
  });
  const deps = {
    routing: () => routing!,
    store,
    pool,
    metrics,
    log,
    bodyLimitBytes: settings.bodyLimitBytes,
    stripeToleranceSeconds: () => config.current().ingest.stripeToleranceSeconds,
  };
  const webhooks = await buildWebhookServer(deps);
  const admin = await buildAdminServer(deps, async () => {
    const problems: string[] = [];
    if (!schema.ready) problems.push('database schema not migrated yet');
    else if (!(await databaseResponds(pool))) problems.push('database not reachable');
    return problems;
  });
  const host = opts.host ?? settings.host;
  const webhookUrl = await listen(webhooks, host, opts.port ?? settings.port);
  const adminUrl = await listen(admin, host, opts.adminPort ?? settings.adminPort);
  log.info({ webhookUrl, adminUrl }, 'ingest listening');

  return {
    webhookUrl,
    adminUrl,
    async close() {
      config.close();
      schema.stop();
      // close() lets in-flight requests finish: their events are committed before the process exits.
      await Promise.all([webhooks.close(), admin.close()]);
      await pool.end();
      await db.stop();
    },
  };
}

async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  const address = await app.listen({ host, port });
  return address.replace('[::1]', '127.0.0.1');
}
