/**
 * npm run bench:forwarder — how fast the forwarder drains a backlog to a local Conversions API (the fake
 * Meta server of test/fakes/meta, validating every event as Meta does, in a worker thread of its own).
 *
 *   (base) the raw drain loop of performance.md §3: BEGIN; SELECT … LIMIT 1000 FOR UPDATE SKIP LOCKED;
 *          POST pre-built events (no mapping, no hashing, no validation); UPDATE status = 1; COMMIT;
 *   (f1)   the forwarder's pixel worker (lease claim, mapping, hashing, local validation, POST, record)
 *          with one batch in flight;
 *   (fN)   the same with BENCH_IN_FLIGHT (default 3) batches in flight;
 * then the drain time of a BENCH_BACKLOG (default 100,000) backlog with fN.
 *
 * Rounds are interleaved with a rotating order; TRUNCATE + CHECKPOINT before each run. Prints events/s per
 * run, the medians and ratios (per-round ratios' median), and last a JSON line. BENCH_EVENTS (default
 * 20,000) events per throughput run, BENCH_ROUNDS (default 3).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type pg from 'pg';
import { startDatabase } from '../core/db/embedded-postgres.js';
import { migrate } from '../core/db/migrations.js';
import { createPool } from '../core/db/pool.js';
import { createLogger } from '../core/logging.js';
import { GRAPH_API_VERSION } from '../forwarder/graph-client.js';
import { createForwarderMetrics } from '../forwarder/metrics.js';
import { PixelWorker, type WorkerSettings } from '../forwarder/pixel-worker.js';
import { StripeCustomers } from '../forwarder/stripe-customers.js';
import type { ServerEvent } from '../forwarder/meta/event.js';
import type * as FakeMeta from '../test/fakes/meta/server.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT ?? 3);
const BACKLOG = Number(process.env.BENCH_BACKLOG ?? 100_000);
/** Comma-separated subset of base,f1,fN to run (for profiling); all by default. */
const ONLY = process.env.BENCH_MODES?.split(',');
const TOKEN = 'EAAbenchTOKEN0123456789';
const PIXEL_ID = '123456789012345';
const DESTINATION = 'meta:bench/pixel';

type Mode = 'base' | 'f1' | 'fN';
/** The fake's module, loaded by the worker thread from its compiled path (this reference makes tsc emit it). */
const FAKE_META_EXPORT: keyof typeof FakeMeta = 'startFakeMeta';

/** The fake Meta server in a worker thread, so it does not share the forwarder's event loop. */
async function startMeta(): Promise<{
  url: string;
  counters: () => Promise<{ delivered: number; duplicates: number }>;
  close: () => Promise<void>;
}> {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const server = pathToFileURL(path.join(here, '../test/fakes/meta/server.js')).href;
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.server).then(async (fake) => {
      const meta = await fake[workerData.start]();
      const pixel = meta.state.addPixel(workerData.pixelId, { tokens: [workerData.token] });
      parentPort.on('message', async (m) => {
        if (m === 'counters') parentPort.postMessage({ delivered: pixel.delivered.length, duplicates: pixel.counters.duplicates });
        if (m === 'close') { await meta.close(); parentPort.postMessage('closed'); }
      });
      parentPort.postMessage({ url: meta.url });
    });`,
    { eval: true, workerData: { server, start: FAKE_META_EXPORT, pixelId: PIXEL_ID, token: TOKEN } },
  );
  const next = () => new Promise<unknown>((resolve) => worker.once('message', resolve));
  const { url } = (await next()) as { url: string };
  return {
    url,
    counters: async () => {
      worker.postMessage('counters');
      return (await next()) as { delivered: number; duplicates: number };
    },
    close: async () => {
      worker.postMessage('close');
      await next();
      await worker.terminate();
    },
  };
}

/** A backlog of `n` invoice.paid events with customer data and click ids, written set-based. */
async function fill(pool: pg.Pool, n: number): Promise<void> {
  await pool.query('TRUNCATE outbox, events CASCADE');
  await pool.query('CHECKPOINT');
  for (let start = 1; start <= n; start += 50_000) {
    const end = Math.min(n, start + 49_999);
    await pool.query(
      `WITH ev AS (
         INSERT INTO events (source, integration, idempotency_key, provider_event_id, provider_type, conversion_type,
                             occurred_at, amount_minor, currency, customer_id, customer_email, attribution, details,
                             payload)
         SELECT 'stripe', 'bench/acme', 'self:evt_' || g, 'evt_' || g, 'invoice.paid', 'invoice_paid',
                now() - interval '1 minute', 1000 + g, 'EUR', 'cus_' || g, 'Buyer' || g || '@Example.com',
                jsonb_build_object('fbc', 'fb.1.1700000000000.IwAR' || g, 'fbp', 'fb.1.1700000000000.' || g,
                                   'client_ip', '203.0.113.' || (g % 250), 'client_user_agent', 'Mozilla/5.0 (X11)'),
                jsonb_build_object(
                  'invoice', 'in_' || g, 'billingReason', 'subscription_cycle',
                  -- 500 first names, 2,000 last names, 1,000 cities: customers share names and places.
                  'customerName', 'First' || (g % 500) || ' Last' || (g % 2000),
                  'customerPhone', '+1 415 555 ' || lpad((g % 10000)::text, 4, '0'),
                  'customerAddress', jsonb_build_object(
                    'city', 'City ' || (g % 1000), 'state', (ARRAY['CA', 'NY', 'TX', 'WA', 'IL'])[g % 5 + 1],
                    'postal_code', lpad((10000 + g % 1000)::text, 5, '0'), 'country', 'US')),
                jsonb_build_object('id', 'evt_' || g, 'object', 'event', 'type', 'invoice.paid', 'pad', repeat('x', 900))
           FROM generate_series($1::int, $2::int) AS g
         RETURNING id)
       INSERT INTO outbox (event_id, destination) SELECT id, $3 FROM ev ORDER BY id`,
      [start, end, DESTINATION],
    );
  }
  await pool.query('ANALYZE outbox');
  await pool.query('ANALYZE events');
}

async function pending(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::bigint AS n FROM outbox WHERE status = 0',
  );
  return rows[0]!.n;
}

/** The §3 loop: a transaction held across the POST, no mapping. */
async function baseline(pool: pg.Pool, metaUrl: string, n: number): Promise<number> {
  const start = process.hrtime.bigint();
  const client = await pool.connect();
  const now = Math.floor(Date.now() / 1000);
  try {
    for (;;) {
      await client.query('BEGIN');
      const { rows } = await client.query<{ id: number }>(
        'SELECT id FROM outbox WHERE status = 0 ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED',
      );
      if (rows.length === 0) {
        await client.query('COMMIT');
        break;
      }
      const data: ServerEvent[] = rows.map((r) => ({
        event_name: 'Purchase',
        event_time: now,
        event_id: `base_${r.id}`,
        action_source: 'system_generated',
        user_data: { external_id: [String(r.id)] },
        custom_data: { value: 10, currency: 'EUR' },
      }));
      const res = await fetch(`${metaUrl}/${GRAPH_API_VERSION}/${PIXEL_ID}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ data, access_token: TOKEN }),
      });
      if (res.status !== 200) throw new Error(`baseline POST failed: ${res.status} ${await res.text()}`);
      await res.text();
      await client.query('UPDATE outbox SET status = 1 WHERE id = ANY($1::bigint[])', [
        rows.map((r) => r.id),
      ]);
      await client.query('COMMIT');
    }
  } finally {
    client.release();
  }
  return seconds(start, n);
}

async function forwarder(pool: pg.Pool, metaUrl: string, n: number, inFlight: number): Promise<number> {
  const log = createLogger('bench', 'warn');
  const settings: WorkerSettings = {
    graphBaseUrl: metaUrl,
    graphVersion: GRAPH_API_VERSION,
    batchSize: 1000,
    concurrency: inFlight,
    leaseSeconds: 60,
    requestTimeoutMs: 30_000,
    idlePollMs: 5,
    backoff: { baseMs: 100, maxMs: 1000, rateLimitBaseMs: 100 },
    maxCustomerDeferrals: 3,
    partnerAgent: 'tally-bench',
  };
  const worker = new PixelWorker(
    { id: 'bench/pixel', pixelId: PIXEL_ID, accessToken: TOKEN, testEventCode: undefined, names: undefined },
    {
      pool,
      worker: settings,
      metrics: createForwarderMetrics(),
      log,
      customers: new StripeCustomers({ baseUrl: 'http://127.0.0.1:9', keyFor: () => undefined }),
    },
  );
  const start = process.hrtime.bigint();
  worker.start();
  // The worker's own counters say when it is done: polling the table would load the database it measures.
  const done = () => {
    const s = worker.status();
    return s.sent + s.skipped + s.deadLettered >= n;
  };
  while (!done()) await sleep(2);
  const took = seconds(start, n);
  await worker.stop();
  if ((await pending(pool)) !== 0) throw new Error('rows left pending');
  return took;
}

function seconds(start: bigint, n: number): number {
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  return n / s;
}

/** Event-loop utilisation of the forwarder's thread in the last run: near 1 means it is CPU-bound. */
let busy = 0;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function run(pool: pg.Pool, mode: Mode, n: number): Promise<number> {
  await fill(pool, n);
  const meta = await startMeta();
  try {
    const elu = performance.eventLoopUtilization();
    const rate =
      mode === 'base'
        ? await baseline(pool, meta.url, n)
        : await forwarder(pool, meta.url, n, mode === 'f1' ? 1 : IN_FLIGHT);
    busy = performance.eventLoopUtilization(elu).utilization;
    const c = await meta.counters();
    if (c.delivered !== n || c.duplicates !== 0) {
      throw new Error(
        `${mode}: Meta got ${c.delivered} events and ${c.duplicates} duplicates, expected ${n} and 0`,
      );
    }
    const { rows } = await pool.query<{ n: number }>(
      'SELECT count(*)::bigint AS n FROM outbox WHERE status = 1',
    );
    if (rows[0]!.n !== n) throw new Error(`${mode}: ${rows[0]!.n} rows marked sent, expected ${n}`);
    return rate;
  } finally {
    await meta.close();
  }
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tally-bench-forwarder-'));
  // PostgreSQL runs as the `postgres` user when the bench runs as root: it must be able to enter the folder.
  await chmod(dir, 0o755);
  const db = await startDatabase(dir);
  const log = createLogger('bench', 'warn');
  const pool = createPool(db.url, log, { max: 8, statementTimeoutMillis: 120_000 });
  try {
    await migrate(pool);
    console.log(
      `forwarder benchmark: ${EVENTS} events per run, ${ROUNDS} rounds, ${IN_FLIGHT} batches in flight for fN, ` +
        `backlog ${BACKLOG}; PostgreSQL from ${db.source}`,
    );
    const modes: Mode[] = ['base', 'f1', 'fN'];
    const results: Record<Mode, number[]> = { base: [], f1: [], fN: [] };
    const ratios = { f1_base: [] as number[], fN_base: [] as number[], fN_f1: [] as number[] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = modes.map((_, i) => modes[(i + round) % modes.length]!);
      const got: Partial<Record<Mode, number>> = {};
      for (const mode of order) {
        if (ONLY && !ONLY.includes(mode)) {
          got[mode] = NaN;
          continue;
        }
        got[mode] = await run(pool, mode, EVENTS);
        results[mode].push(got[mode]);
        console.log(
          `round ${round + 1} ${mode.padEnd(4)} ${Math.round(got[mode]).toString().padStart(7)} events/s` +
            `  (forwarder thread busy ${Math.round(busy * 100)} %)`,
        );
      }
      ratios.f1_base.push(got.f1! / got.base!);
      ratios.fN_base.push(got.fN! / got.base!);
      ratios.fN_f1.push(got.fN! / got.f1!);
    }

    await fill(pool, BACKLOG);
    const meta = await startMeta();
    const drainStart = process.hrtime.bigint();
    await forwarder(pool, meta.url, BACKLOG, IN_FLIGHT);
    const drainSeconds = Number(process.hrtime.bigint() - drainStart) / 1e9;
    const c = await meta.counters();
    await meta.close();
    if (c.delivered !== BACKLOG || c.duplicates !== 0) {
      throw new Error(`backlog: Meta got ${c.delivered} events and ${c.duplicates} duplicates`);
    }

    const summary = {
      events: EVENTS,
      rounds: ROUNDS,
      inFlight: IN_FLIGHT,
      medianEventsPerSecond: {
        baseline: Math.round(median(results.base)),
        forwarderOneInFlight: Math.round(median(results.f1)),
        forwarderSeveralInFlight: Math.round(median(results.fN)),
      },
      ratios: {
        forwarderOneInFlightVsBaseline: Number(median(ratios.f1_base).toFixed(2)),
        forwarderSeveralInFlightVsBaseline: Number(median(ratios.fN_base).toFixed(2)),
        severalVsOneInFlight: Number(median(ratios.fN_f1).toFixed(2)),
      },
      backlog: {
        events: BACKLOG,
        drainSeconds: Number(drainSeconds.toFixed(2)),
        eventsPerSecond: Math.round(BACKLOG / drainSeconds),
      },
      duplicates: 0,
    };
    console.log(
      `medians: baseline ${summary.medianEventsPerSecond.baseline}/s, forwarder 1 in flight ` +
        `${summary.medianEventsPerSecond.forwarderOneInFlight}/s (${summary.ratios.forwarderOneInFlightVsBaseline}× baseline), ` +
        `${IN_FLIGHT} in flight ${summary.medianEventsPerSecond.forwarderSeveralInFlight}/s ` +
        `(${summary.ratios.forwarderSeveralInFlightVsBaseline}× baseline, ${summary.ratios.severalVsOneInFlight}× one in flight)`,
    );
    console.log(
      `backlog of ${BACKLOG}: drained in ${summary.backlog.drainSeconds} s (${summary.backlog.eventsPerSecond}/s)`,
    );
    console.log(JSON.stringify(summary));
  } finally {
    await pool.end();
    await db.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
