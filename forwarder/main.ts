import Fastify, { LogController } from 'fastify';
import type { Logger } from 'pino';
import type pg from 'pg';
import { ConfigSource } from '../core/config/config-source.js';
import { integrationId, type TallyConfig } from '../core/config/tally-config.js';
import { openDatabase } from '../core/db/embedded-postgres.js';
import { migrate } from '../core/db/migrations.js';
import { databaseResponds, keepMigrating } from '../core/db/schema-readiness.js';
import { createPool, redactDatabaseUrl } from '../core/db/pool.js';
import { createLogger } from '../core/logging.js';
import { GRAPH_API_BASE_URL, GRAPH_API_VERSION } from './graph-client.js';
import type { EventNames } from './mapping.js';
import { redactSecrets } from './meta/errors.js';
import { MAX_EVENTS_PER_REQUEST } from './meta/event.js';
import { createForwarderMetrics, type ForwarderMetrics } from './metrics.js';
import {
  deleteFinishedRows,
  destinationStats,
  listDeadLetters,
  redriveDeadLetters,
  type RedriveFilter,
} from './outbox.js';
import { PixelWorker, type PixelSettings, type WorkerSettings } from './pixel-worker.js';
import { StripeCustomers } from './stripe-customers.js';

export const STRIPE_API_BASE_URL = 'https://api.stripe.com';
export const DEFAULT_ADMIN_PORT = 9091;

export interface ForwarderOptions {
  configPath: string;
  /** Where the embedded PostgreSQL keeps its data when no database URL is configured. */
  dataDir: string;
  /** Admin listener (/healthz, /readyz, /metrics, /api/v1/…); default 9091, 0 for any free port. */
  adminPort?: number;
  host?: string;
  /** Graph API base URL (default https://graph.facebook.com) and version (default GRAPH_API_VERSION). */
  graphBaseUrl?: string;
  graphVersion?: string;
  /** Stripe API base for customer look-ups (default https://api.stripe.com). */
  stripeApiBaseUrl?: string;
  /** Restricted key per StripeIntegration (namespace/name), for customer look-ups. */
  stripeApiKeys?: Record<string, string>;
  /** Events per request (≤ 1000, default 1000). */
  batchSize?: number;
  /** Batches in flight per pixel (default 2). */
  batchesInFlight?: number;
  /** How long a claimed batch is reserved before another replica may take it (default 60 s). */
  leaseSeconds?: number;
  /** Conversions API request timeout (default 10 s). */
  requestTimeoutMs?: number;
  /** Idle poll interval (default 1 s). */
  idlePollMs?: number;
  /** Retry backoff: first delay, cap, and first delay after a rate limit or policy block. */
  backoff?: Partial<WorkerSettings['backoff']>;
  /** Event name overrides per MetaPixel (namespace/name). */
  eventNames?: Record<string, EventNames>;
  customerCache?: {
    ttlMs?: number;
    maxEntries?: number;
    maxInlineWaitMs?: number;
    maxInlineRetries?: number;
  };
  /** How often the outbox depth gauges are refreshed (default 5 s). */
  statsIntervalMs?: number;
  /** How often the config file is polled besides the watcher (default 5 s). */
  configPollMs?: number;
  /** How often finished outbox rows past the retention period are deleted (default 1 h). */
  retentionIntervalMs?: number;
}

export interface RunningForwarder {
  adminUrl: string;
  close(): Promise<void>;
}

/** `tally forwarder`: drain the outbox to Meta's Conversions API, one set of loops per MetaPixel. */
export async function runForwarder(opts: ForwarderOptions): Promise<RunningForwarder> {
  const log = createLogger('forwarder');
  const metrics = createForwarderMetrics();
  const workers = new Map<string, PixelWorker>();
  let apply: ((c: TallyConfig) => void) | undefined;
  let latest: TallyConfig | undefined;
  const config = await ConfigSource.load(opts.configPath, {
    onReload: (c) => {
      latest = c;
      metrics.configReloads.inc({ result: 'success' });
      log.info({ metaPixels: c.metaPixels.length }, 'configuration loaded');
      apply?.(c);
    },
    onReloadFailed: (err) => {
      metrics.configReloads.inc({ result: 'failure' });
      log.error({ error: err.message }, 'configuration rejected; the last good one stays live');
    },
  });
  config.watch(opts.configPollMs);

  const db = await openDatabase(config.current().database.url, opts.dataDir);
  const url = db.url;
  log.info({ database: redactDatabaseUrl(url), from: db.source }, 'using PostgreSQL');
  // Options (tests, flags) win over the configuration file's forwarder section.
  const settings = config.current().forwarder;
  const batchesInFlight = opts.batchesInFlight ?? settings.batchesInFlight;
  const pool = createPool(url, log, { max: 4 + 2 * batchesInFlight, statementTimeoutMillis: 30_000 });

  const worker: WorkerSettings = {
    graphBaseUrl: opts.graphBaseUrl ?? settings.graphBaseUrl ?? GRAPH_API_BASE_URL,
    graphVersion: opts.graphVersion ?? GRAPH_API_VERSION,
    batchSize: Math.min(MAX_EVENTS_PER_REQUEST, Math.max(1, opts.batchSize ?? settings.batchSize)),
    concurrency: Math.max(1, batchesInFlight),
    leaseSeconds: opts.leaseSeconds ?? 60,
    requestTimeoutMs: opts.requestTimeoutMs ?? 10_000,
    idlePollMs: opts.idlePollMs ?? 1_000,
    backoff: { baseMs: 1_000, maxMs: 10 * 60_000, rateLimitBaseMs: 60_000, ...opts.backoff },
    maxCustomerDeferrals: 3,
    partnerAgent: 'tally',
  };
  if (worker.leaseSeconds * 1000 < 3 * worker.requestTimeoutMs) {
    // A lease is renewed before each request; one request must fit well inside it.
    log.warn(
      { leaseSeconds: worker.leaseSeconds, requestTimeoutMs: worker.requestTimeoutMs },
      'lease shorter than three request timeouts: a hung request may outlive it and its batch be sent twice',
    );
  }
  // The key of a StripeIntegration is read at each look-up, so a reloaded configuration applies at once.
  const keyFor = (integration: string) =>
    opts.stripeApiKeys?.[integration] ??
    (latest ?? config.current()).stripe.find((s) => integrationId(s) === integration)?.apiKey;
  const customers = new StripeCustomers({
    baseUrl: opts.stripeApiBaseUrl ?? settings.stripeApiBaseUrl ?? STRIPE_API_BASE_URL,
    keyFor,
    ttlMs: opts.customerCache?.ttlMs,
    maxEntries: opts.customerCache?.maxEntries,
    maxInlineWaitMs: opts.customerCache?.maxInlineWaitMs,
    maxInlineRetries: opts.customerCache?.maxInlineRetries,
    onLookup: (integration, result) => metrics.customerLookups.inc({ integration, result }),
  });

  const schema = keepMigrating(pool, log);
  // Pixels start once the schema exists; reloads before that are applied then.
  apply = (c) => {
    if (!schema.ready) return;
    const wanted = new Map<string, PixelSettings>(
      c.metaPixels.map((p) => [
        integrationId(p),
        {
          id: integrationId(p),
          pixelId: p.pixelId,
          accessToken: p.accessToken,
          testEventCode: p.testEventCode,
          names: opts.eventNames?.[integrationId(p)] ?? p.eventNames,
        },
      ]),
    );
    for (const [id, w] of workers) {
      if (!wanted.has(id)) {
        workers.delete(id);
        metrics.paused.remove({ pixel: id });
        void w.stop();
      }
    }
    for (const [id, settings] of wanted) {
      const existing = workers.get(id);
      if (existing) existing.update(settings);
      else {
        const w = new PixelWorker(settings, { pool, worker, metrics, log, customers });
        workers.set(id, w);
        w.start();
      }
    }
  };
  void schema.done.then(() => latest && apply?.(latest));

  const stats = startStats(pool, metrics, () => [...workers.keys()], opts.statsIntervalMs ?? 5_000);
  const retention = startRetention(
    pool,
    metrics,
    log,
    () => (latest ?? config.current()).forwarder.outboxRetentionDays,
    opts.retentionIntervalMs ?? 60 * 60_000,
    schema.done,
  );
  const admin = buildAdminServer({ pool, metrics, log, workers, schema });
  const address = await admin.listen({
    host: opts.host ?? settings.host,
    port: opts.adminPort ?? settings.adminPort ?? DEFAULT_ADMIN_PORT,
  });
  const adminUrl = address.replace('[::1]', '127.0.0.1').replace('0.0.0.0', '127.0.0.1');
  log.info({ adminUrl, graphVersion: worker.graphVersion }, 'forwarder running');

  return {
    adminUrl,
    async close() {
      config.close();
      schema.stop();
      stats.stop();
      retention.stop();
      apply = undefined;
      // In-flight batches finish and record their outcome before the pool closes.
      await Promise.all([...workers.values()].map((w) => w.stop()));
      await admin.close();
      await pool.end();
      await db.stop();
    },
  };
}

/** Refreshes the outbox depth gauges; a query per interval, not per scrape. */
function startStats(pool: pg.Pool, metrics: ForwarderMetrics, pixels: () => string[], intervalMs: number) {
  const refresh = async () => {
    try {
      const stats = await destinationStats(pool);
      for (const pixel of pixels()) {
        const s = stats.get(`meta:${pixel}`);
        metrics.pending.set({ pixel }, s?.pending ?? 0);
        metrics.deadLetterDepth.set({ pixel }, s?.deadLettered ?? 0);
        metrics.oldestPending.set({ pixel }, s?.oldestPendingSeconds ?? 0);
      }
    } catch {
      // The database is down: readiness says so; the gauges keep their last values.
    }
  };
  const timer = setInterval(() => void refresh(), intervalMs);
  timer.unref();
  void refresh();
  return {
    refresh,
    stop: () => clearInterval(timer),
  };
}

/**
 * Deletes finished outbox rows past the retention period, once the schema exists and then every
 * interval. Replicas may all run it: a row goes once, and a replica that finds it gone moves on.
 */
function startRetention(
  pool: pg.Pool,
  metrics: ForwarderMetrics,
  log: Logger,
  retentionDays: () => number,
  intervalMs: number,
  schemaReady: Promise<unknown>,
) {
  let running: Promise<void> | undefined;
  let stopped = false;
  const run = () => {
    if (stopped) return;
    running ??= deleteFinishedRows(pool, retentionDays())
      .then((deleted) => {
        metrics.retentionDeleted.inc(deleted);
        if (deleted > 0)
          log.info({ deleted, retentionDays: retentionDays() }, 'deleted finished outbox rows');
      })
      .catch((err: Error) => log.warn({ error: err.message }, 'could not delete finished outbox rows'))
      .finally(() => (running = undefined));
  };
  const timer = setInterval(run, intervalMs);
  timer.unref();
  void schemaReady.then(run);
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}

function buildAdminServer(deps: {
  pool: pg.Pool;
  metrics: ForwarderMetrics;
  log: Logger;
  workers: Map<string, PixelWorker>;
  schema: { ready: boolean };
}) {
  const { pool, metrics, workers } = deps;
  const app = Fastify({
    loggerInstance: deps.log,
    logController: new LogController({ disableRequestLogging: true }),
  });
  app.get('/healthz', () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const problems: string[] = [];
    if (!deps.schema.ready) problems.push('database schema not migrated yet');
    else if (!(await databaseResponds(pool))) problems.push('database not reachable');
    return problems.length === 0
      ? { status: 'ready' }
      : reply.code(503).send({ status: 'not_ready', problems });
  });
  app.get('/metrics', async (_req, reply) =>
    reply.header('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  // The operator's MetaPixel status: this replica's counters plus the shared outbox's depth.
  app.get('/api/v1/pixels', async () => {
    const stats = await destinationStats(pool).catch(() => new Map<string, never>());
    return {
      items: [...workers.values()].map((w) => {
        const status = w.status();
        const s = stats.get(`meta:${status.pixel}`);
        return {
          ...status,
          lastError: status.lastError === null ? null : redactSecrets(status.lastError),
          pending: s?.pending ?? 0,
          deadLetteredTotal: s?.deadLettered ?? 0,
          sentTotal: s?.sentTotal ?? 0,
          oldestPendingSeconds: s?.oldestPendingSeconds ?? null,
        };
      }),
    };
  });
  app.get<{ Querystring: { pixel?: string; reason?: string; cursor?: string; limit?: string } }>(
    '/api/v1/dead-letters',
    async (req, reply) => {
      const limit = req.query.limit === undefined ? 100 : Number(req.query.limit);
      const afterId = req.query.cursor === undefined ? undefined : Number(req.query.cursor);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
        return reply.code(400).send({ error: 'limit must be an integer from 1 to 1000' });
      }
      if (afterId !== undefined && !Number.isSafeInteger(afterId)) {
        return reply.code(400).send({ error: 'invalid cursor' });
      }
      return listDeadLetters(pool, { pixel: req.query.pixel, reason: req.query.reason, afterId, limit });
    },
  );
  app.post<{ Body: unknown }>('/api/v1/dead-letters/redrive', async (req, reply) => {
    const filter = parseRedriveFilter(req.body);
    if (typeof filter === 'string') return reply.code(400).send({ error: filter });
    const ids = await redriveDeadLetters(pool, filter);
    deps.log.info({ filter, redriven: ids.length }, 'dead letters re-driven');
    return { redriven: ids.length, outboxIds: ids };
  });
  return app;
}

/** The body of POST /api/v1/dead-letters/redrive, or why it is wrong. */
export function parseRedriveFilter(body: unknown): RedriveFilter | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return 'send a JSON object with pixel, outboxIds, eventIds and/or reason';
  }
  const b = body as Record<string, unknown>;
  const ids = (key: string): number[] | undefined | string => {
    const v = b[key];
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((x) => !Number.isSafeInteger(x) || (x as number) < 1)) {
      return `${key} must be an array of positive integers`;
    }
    return v as number[];
  };
  const outboxIds = ids('outboxIds');
  const eventIds = ids('eventIds');
  if (typeof outboxIds === 'string') return outboxIds;
  if (typeof eventIds === 'string') return eventIds;
  for (const key of ['pixel', 'reason']) {
    if (b[key] !== undefined && typeof b[key] !== 'string') return `${key} must be a string`;
  }
  const unknown = Object.keys(b).filter((k) => !['pixel', 'reason', 'outboxIds', 'eventIds'].includes(k));
  if (unknown.length > 0) return `unknown field ${unknown[0]}`;
  const filter: RedriveFilter = {
    pixel: b.pixel as string | undefined,
    reason: b.reason as string | undefined,
    outboxIds,
    eventIds,
  };
  if (!filter.pixel && !filter.reason && !outboxIds?.length && !eventIds?.length) {
    return 'name a pixel, outboxIds, eventIds or a reason: re-driving everything takes an explicit filter';
  }
  return filter;
}

export interface RedriveOptions extends RedriveFilter {
  configPath: string;
  dataDir: string;
}

/**
 * `tally forwarder redrive`: dead-lettered rows matching the filter go back to pending. Works on the
 * database directly, so no forwarder needs to run; running forwarders pick the rows up on their next poll.
 */
export async function redrive(opts: RedriveOptions): Promise<number[]> {
  const log = createLogger('forwarder');
  const source = await ConfigSource.load(opts.configPath);
  source.close();
  const db = await openDatabase(source.current().database.url, opts.dataDir);
  const pool = createPool(db.url, log, { max: 1 });
  try {
    await migrate(pool);
    return await redriveDeadLetters(pool, opts);
  } finally {
    await pool.end();
    await db.stop();
  }
}
